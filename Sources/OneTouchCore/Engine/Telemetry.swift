import CoreMetrics
import Foundation

/// What `serve` measures while it works (swift-metrics), for `/metrics`: recorded where it happens,
/// into the factory the composition root gives (a Prometheus registry). Tests give their own; without
/// one (`Telemetry()`) nothing is recorded and nothing costs.
///
/// Names and labels (Prometheus conventions; seconds, `_total` for counters):
/// - `onetouch_step_duration_seconds{step,outcome}`: an attempt of a step, from its start to its end
///   (`outcome`: succeeded, failed: an error ended the attempt, retried or not);
/// - `onetouch_external_call_duration_seconds{adapter,action}` and
///   `onetouch_external_call_errors_total{adapter,action}`: every call to the cloud and the directory;
/// - `onetouch_rate_limiter_wait_seconds{category}`: how long EC2 calls waited for the client's buckets;
/// - `onetouch_sqlite_commit_seconds`: one database commit (a group of writes), with its sync;
/// - `onetouch_host_reports_total{stage}`: reports the hosts sent that were recorded.
public struct Telemetry: Sendable {
    let factory: any MetricsFactory

    public init(factory: any MetricsFactory = NOOPMetricsHandler.instance) {
        self.factory = factory
    }

    public static let stepDuration = "onetouch_step_duration_seconds"
    public static let externalCallDuration = "onetouch_external_call_duration_seconds"
    public static let externalCallErrors = "onetouch_external_call_errors_total"
    public static let rateLimiterWait = "onetouch_rate_limiter_wait_seconds"
    public static let commitDuration = "onetouch_sqlite_commit_seconds"
    public static let hostReports = "onetouch_host_reports_total"

    func stepFinished(_ step: Step, succeeded: Bool, seconds: TimeInterval) {
        record(Self.stepDuration, [("step", step.rawValue), ("outcome", succeeded ? "succeeded" : "failed")], seconds: seconds)
    }

    public func externalCall(adapter: String, action: String, seconds: TimeInterval, failed: Bool) {
        let dimensions = [("adapter", adapter), ("action", action)]
        record(Self.externalCallDuration, dimensions, seconds: seconds)
        if failed { factory.makeCounter(label: Self.externalCallErrors, dimensions: dimensions).increment(by: 1) }
    }

    public func rateLimiterWaited(category: String, seconds: TimeInterval) {
        record(Self.rateLimiterWait, [("category", category)], seconds: seconds)
    }

    func committed(seconds: TimeInterval) {
        record(Self.commitDuration, [], seconds: seconds)
    }

    func reportRecorded(stage: String) {
        factory.makeCounter(label: Self.hostReports, dimensions: [("stage", stage)]).increment(by: 1)
    }

    private func record(_ label: String, _ dimensions: [(String, String)], seconds: TimeInterval) {
        let handler = factory.makeTimer(label: label, dimensions: dimensions)
        handler.recordNanoseconds(Int64((max(0, seconds) * 1e9).rounded()))
    }

    /// Measures `body` as a call of `adapter` (a thrown error counts as failed).
    public func measure<T>(adapter: String, action: String, _ body: () async throws -> T) async throws -> T {
        let start = ContinuousClock.now
        var failed = true
        defer { externalCall(adapter: adapter, action: action, seconds: (ContinuousClock.now - start).seconds, failed: failed) }
        let value = try await body()
        failed = false
        return value
    }
}

/// The cloud's calls, measured (below `BatchingCloud`, so a batched describe counts once).
public struct MeasuredCloud: CloudProvider {
    let base: any CloudProvider
    let adapter: String
    let telemetry: Telemetry

    public init(_ base: any CloudProvider, adapter: String, telemetry: Telemetry) {
        self.base = base
        self.adapter = adapter
        self.telemetry = telemetry
    }

    private func measure<T>(_ action: String, _ body: () async throws -> T) async throws -> T {
        try await telemetry.measure(adapter: adapter, action: action, body)
    }

    public func launch(_ request: LaunchRequest) async throws -> Instance { try await measure("launch") { try await base.launch(request) } }
    public func instances(ids: [String]) async throws -> [Instance] {
        try await measure("describe-instances") { try await base.instances(ids: ids) }
    }
    public func instances(hostIDs: [String]) async throws -> [Instance] {
        try await measure("describe-instances") { try await base.instances(hostIDs: hostIDs) }
    }
    public func instances(launchKeys: [String]) async throws -> [Instance] {
        try await measure("describe-instances") { try await base.instances(launchKeys: launchKeys) }
    }
    public func createVolume(_ request: VolumeRequest) async throws -> Volume {
        try await measure("create-volume") { try await base.createVolume(request) }
    }
    public func volumes(ids: [String]) async throws -> [Volume] {
        try await measure("describe-volumes") { try await base.volumes(ids: ids) }
    }
    public func volumes(hostIDs: [String]) async throws -> [Volume] {
        try await measure("describe-volumes") { try await base.volumes(hostIDs: hostIDs) }
    }
    public func managedInstances() async throws -> [Instance] {
        try await measure("describe-instances") { try await base.managedInstances() }
    }
    public func managedVolumes() async throws -> [Volume] { try await measure("describe-volumes") { try await base.managedVolumes() } }
    public var attachmentDevice: String? { base.attachmentDevice }
    public func declaration(instanceType: String, tags: [String: String]) -> CloudDeclaration {
        base.declaration(instanceType: instanceType, tags: tags)
    }
    public func attachVolume(volumeID: String, instanceID: String) async throws {
        try await measure("attach-volume") { try await base.attachVolume(volumeID: volumeID, instanceID: instanceID) }
    }
    public func terminate(instanceID: String) async throws {
        try await measure("terminate") { try await base.terminate(instanceID: instanceID) }
    }
    public func deleteVolume(volumeID: String) async throws {
        try await measure("delete-volume") { try await base.deleteVolume(volumeID: volumeID) }
    }
}

/// The directory's calls, measured.
public struct MeasuredDirectory: Directory {
    let base: any Directory
    let adapter: String
    let telemetry: Telemetry

    public init(_ base: any Directory, adapter: String, telemetry: Telemetry) {
        self.base = base
        self.adapter = adapter
        self.telemetry = telemetry
    }

    public func lookup(_ host: DirectoryHost) async throws -> DirectoryEntry? {
        try await telemetry.measure(adapter: adapter, action: "lookup") { try await base.lookup(host) }
    }
    public func preregister(_ host: DirectoryHost, proposedPassword: Secret, ownsEntry: Bool) async throws -> Preregistration {
        try await telemetry.measure(adapter: adapter, action: "preregister") {
            try await base.preregister(host, proposedPassword: proposedPassword, ownsEntry: ownsEntry)
        }
    }
    public func isEnrolled(_ host: DirectoryHost, baseline: String) async throws -> Bool {
        try await telemetry.measure(adapter: adapter, action: "is-enrolled") { try await base.isEnrolled(host, baseline: baseline) }
    }
    public func remove(_ host: DirectoryHost) async throws {
        try await telemetry.measure(adapter: adapter, action: "remove") { try await base.remove(host) }
    }
    public func enrollmentInfo(for host: DirectoryHost) -> EnrollmentInfo { base.enrollmentInfo(for: host) }
}
