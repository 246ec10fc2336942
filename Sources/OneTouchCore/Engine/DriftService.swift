import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Configuration drift: the runs hosts report after `ready`, the drift state they lead to, silence,
/// check mode on demand, and cloud drift. Decisions are `Drift`'s and `CloudDrift`'s; this records
/// them, announces transitions through the notifier, and runs the periodic looks inside `serve`.
public final class DriftService: Sendable {
    public struct Options: Sendable {
        /// The hosts' pull period (their timer): two of them plus a host's splay without a report is silence.
        public var pullPeriod: Duration = .seconds(30 * 60)
        /// A report credential older than this is replaced at the host's next report.
        public var credentialMaxAge: Duration = .seconds(30 * 86_400)
        /// Reports a host may send in a burst, and how often one more is allowed.
        public var reportBurst = 10
        public var reportEvery: Duration = .seconds(60)
        /// How often `serve` looks for silent hosts.
        public var silenceSweep: Duration = .seconds(30)
        /// How often `serve` compares the cloud with the configuration; nil: only on `drift --cloud`.
        public var cloudCheck: Duration? = .seconds(3600)
        public init() {}
    }

    public let store: Store
    public let hosts: HostService
    let cloud: any CloudProvider
    let notifier: any Notifier
    let clock: any EngineClock
    let logger: Logger
    public let options: Options
    private let buckets = Mutex<[String: (tokens: Double, at: Date)]>([:])

    public init(
        store: Store, hosts: HostService, cloud: any CloudProvider, notifier: any Notifier, clock: any EngineClock, logger: Logger,
        options: Options = Options()
    ) {
        self.store = store
        self.hosts = hosts
        self.cloud = cloud
        self.notifier = notifier
        self.clock = clock
        self.logger = logger
        self.options = options
    }

    // MARK: Host API

    /// A new report credential for a host being set up (its bootstrap token authenticates the call).
    /// Every call replaces the last, so a host whose answer was lost asks again.
    public func issueCredential(hostID: String, token: String) async throws -> Secret {
        let host = try hosts.authenticate(hostID: hostID, token: token)
        guard [.pending, .running, .waiting].contains(host.hostState.kind) else {
            throw ServiceError(.gone, "a report credential is issued only while the host is set up")
        }
        let credential = Self.newCredential()
        try await store.issueReportCredential(hostID: hostID, hash: SecretBox.tokenHash(credential), now: clock.now)
        logger.info("Report credential issued", metadata: ["host.id": "\(hostID)"])
        return credential
    }

    /// What `POST /runs` answers.
    public struct RunAnswer: Sendable, Codable, Equatable {
        public var recorded: Bool
        public var drift: DriftState?
        /// `check`: run the next pull with `--check --diff` and report it; `apply`: as usual.
        public var nextRun: String
        /// A new report credential (rotation): use it from the next report on.
        public var credential: String?
    }

    /// Records a configuration run. The credential can do nothing else; it must be this host's. A bad
    /// report is refused before anything is written.
    public func report(hostID: String, credential: String, _ run: ConfigRunReport) async throws -> RunAnswer {
        let now = clock.now
        guard let host = try store.host(id: hostID), let stored = try store.reportCredential(hostID: hostID),
            ![.destroying, .destroyed].contains(host.state)
        else { throw ServiceError(.unauthorized, "unknown host or invalid report credential") }
        let current = SecretBox.tokenMatches(credential, hash: stored.hash)
        let next = stored.nextHash.map { SecretBox.tokenMatches(credential, hash: $0) } ?? false
        guard current || next else { throw ServiceError(.unauthorized, "unknown host or invalid report credential") }
        if let problem = run.problem() { throw ServiceError(.invalid, "report refused: \(problem)") }
        guard takeToken(hostID: hostID, now: now) else {
            throw ServiceError(
                .tooManyRequests,
                "more than \(options.reportBurst) reports in a burst from this host; one more is allowed every \(Int(options.reportEvery.seconds)) s"
            )
        }
        if next { try await store.promoteReportCredential(hostID: hostID, now: now) }
        let name = host.name
        let period = options.pullPeriod
        let recorded = try await store.recordRun(hostID: hostID, run, now: now, announcing: host.state == .ready) { state in
            Drift.eventReason(name, to: state, run: run, period: period)
        }
        logger.info(
            "Configuration run reported",
            metadata: [
                "host.id": "\(hostID)", "host.name": "\(name)", "exit": "\(run.exitStatus)", "check": "\(run.checkMode)",
                "drift": "\(recorded.state?.rawValue ?? "-")",
            ])
        if recorded.announce, let state = recorded.state {
            await announce(host, Drift.eventReason(name, to: state, run: run, period: period))
        }
        // Rotation: when the credential is old, or a rotated one was offered but never used (its answer was
        // lost), offer a fresh one; the one presented keeps working until the new one is used.
        var rotated: Secret?
        if current && (stored.nextHash != nil || now.timeIntervalSince(stored.issuedAt) > options.credentialMaxAge.seconds) {
            let fresh = Self.newCredential()
            try await store.offerReportCredential(hostID: hostID, next: SecretBox.tokenHash(fresh))
            rotated = fresh
            logger.info("Report credential rotated", metadata: ["host.id": "\(hostID)"])
        }
        return RunAnswer(
            recorded: true, drift: recorded.state, nextRun: recorded.checkRequested ? "check" : "apply", credential: rotated?.reveal())
    }

    /// A per-host token bucket: `reportBurst` at once, one more every `reportEvery`.
    func takeToken(hostID: String, now: Date) -> Bool {
        buckets.withLock { buckets in
            let refill = 1 / options.reportEvery.seconds
            var bucket = buckets[hostID] ?? (Double(options.reportBurst), now)
            bucket.tokens = min(Double(options.reportBurst), bucket.tokens + now.timeIntervalSince(bucket.at) * refill)
            bucket.at = now
            guard bucket.tokens >= 1 else {
                buckets[hostID] = bucket
                return false
            }
            bucket.tokens -= 1
            buckets[hostID] = bucket
            return true
        }
    }

    static func newCredential() -> Secret {
        var generator = SystemRandomNumberGenerator()
        return Secret(Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }).base64URLEncoded())
    }

    func announce(_ host: HostRecord, _ text: String) async {
        do {
            try await notifier.announce(
                Announcement(
                    kind: .drift, hostName: host.name, hostID: host.id, role: host.role, text: text,
                    idempotencyKey: "\(host.id)-drift-\(Int(clock.now.timeIntervalSince1970))"))
        } catch {
            logger.warning("Drift announcement failed", metadata: ["host.id": "\(host.id)", "error": "\(error)"])
        }
    }

    // MARK: Admin

    /// Every ready host's drift, by name.
    public func list() throws -> [DriftView] { try store.driftViews() }

    /// Asks hosts to run their next pull in check mode; returns the names asked.
    public func requestCheck(names: [String], role: String?, all: Bool) async throws -> [String] {
        let ready = try store.hosts(state: .ready)
        let chosen: [HostRecord]
        if all {
            chosen = ready
        } else if let role {
            chosen = ready.filter { $0.role == role }
            if chosen.isEmpty { throw ServiceError(.notFound, "no ready host has role '\(role)'") }
        } else {
            chosen = try names.map { name in
                let host = try hosts.host(named: name)
                guard host.state == .ready else {
                    throw ServiceError(.conflict, "\(name) is \(host.state.rawValue): only ready hosts run their configuration on a timer")
                }
                return host
            }
        }
        let count = try await store.requestCheck(hostIDs: chosen.map(\.id))
        logger.info("Check mode requested", metadata: ["hosts": "\(count)"])
        return chosen.map(\.name).sorted()
    }

    /// Makes a host's report credential due for rotation: its next report gets a new one.
    public func rotateCredential(name: String) async throws {
        let host = try hosts.host(named: name)
        guard try await store.expireReportCredential(hostID: host.id) else {
            throw ServiceError(
                .notFound,
                "\(name) has no report credential (it was set up before drift reporting, or is being destroyed); `onetouch retry \(name) --from provision` gives a live host a new machine with one"
            )
        }
    }

    // MARK: Periodic looks

    /// Marks hosts silent that have not reported within two pull periods plus their splay.
    @discardableResult
    public func sweepSilence() async throws -> [String] {
        let now = clock.now
        let period = options.pullPeriod
        var silenced: [String] = []
        for quiet in try store.quietHosts(reportedBefore: now.addingTimeInterval(-2 * period.seconds)) {
            let splay = UserDataRenderer.splay(hostID: quiet.id, period: Int(period.seconds))
            guard now >= Drift.silentAfter(quiet.lastReportAt, period: period, splaySeconds: splay) else { continue }
            let reason = Drift.eventReason(quiet.name, to: .silent, run: nil, period: period)
            if try await store.markSilent(hostID: quiet.id, lastReportAt: quiet.lastReportAt, reason: reason, now: now),
                let host = try store.host(id: quiet.id)
            {
                silenced.append(quiet.name)
                await announce(host, reason)
            }
        }
        return silenced
    }

    /// One host's cloud drift.
    public struct CloudView: Sendable, Codable, Equatable {
        public var name: String
        public var id: String
        public var instanceId: String?
        public var differences: [CloudDifference]
    }

    /// Compares every ready host's instance and volumes with what is declared; records (and announces)
    /// what appeared and what cleared. Changes nothing in the cloud.
    public func checkCloud() async throws -> [CloudView] {
        let ready = try store.hosts(state: .ready)
        let facts = Dictionary(uniqueKeysWithValues: ready.map { ($0.id, $0.decodedFacts) })
        let instances = try await cloud.instances(ids: ready.compactMap { facts[$0.id]?.instanceID })
        let byID = Dictionary(instances.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let volumeIDs = ready.compactMap { facts[$0.id]?.volumeID } + instances.compactMap(\.rootVolumeID)
        let volumes = Dictionary(
            try await cloud.volumes(ids: volumeIDs).map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let now = clock.now
        var views: [CloudView] = []
        for host in ready {
            guard let spec = try? host.decodedSpec, let hostFacts = facts[host.id], let instanceID = hostFacts.instanceID else { continue }
            let instance = byID[instanceID]
            let declared = cloud.declaration(
                instanceType: spec.instanceType, tags: StepContext.tags(host: host, spec: spec, installation: store.installationID))
            let found = CloudDrift.differences(
                declared: declared, instance: instance, rootVolume: instance?.rootVolumeID.flatMap { volumes[$0] },
                dataVolumeID: hostFacts.volumeID, dataVolume: hostFacts.volumeID.flatMap { volumes[$0] })
            let name = host.name
            let (appeared, cleared) = try await store.recordCloudDrift(hostID: host.id, found: found, now: now) { difference, appeared in
                Self.cloudReason(name, difference, appeared: appeared)
            }
            for difference in appeared { await announce(host, Self.cloudReason(name, difference, appeared: true)) }
            for difference in cleared { await announce(host, Self.cloudReason(name, difference, appeared: false)) }
            views.append(CloudView(name: name, id: host.id, instanceId: instanceID, differences: found))
        }
        logger.info(
            "Cloud drift checked", metadata: ["hosts": "\(views.count)", "differing": "\(views.filter { !$0.differences.isEmpty }.count)"])
        return views.sorted { $0.name < $1.name }
    }

    static func cloudReason(_ name: String, _ difference: CloudDifference, appeared: Bool) -> String {
        appeared
            ? "cloud drift: \(name): \(difference.field) is \(difference.actual), the configuration declares \(difference.expected); nothing was changed (put it back by hand, or change the configuration)"
            : "cloud drift cleared: \(name): \(difference.field) is \(difference.expected) again"
    }
}

/// Runs the periodic drift looks beside the engine in `serve`.
public struct DriftWatcher: Service {
    let drift: DriftService
    public init(_ drift: DriftService) { self.drift = drift }

    public func run() async throws {
        try await cancelWhenGracefulShutdown { try await loop() }
    }

    func loop() async throws {
        let clock = drift.clock
        var nextCloud = drift.options.cloudCheck.map { clock.now.addingTimeInterval($0.seconds) }
        while !Task.isCancelled {
            do { try await drift.sweepSilence() } catch {
                drift.logger.warning("Silence sweep failed; trying again", metadata: ["error": "\(error)"])
            }
            if let due = nextCloud, clock.now >= due, let every = drift.options.cloudCheck {
                do { _ = try await drift.checkCloud() } catch {
                    drift.logger.warning(
                        "Cloud drift check failed; trying again at the next period",
                        metadata: ["error": "\(StepError.classify(error).message)"])
                }
                nextCloud = clock.now.addingTimeInterval(every.seconds)
            }
            var wake = clock.now.addingTimeInterval(drift.options.silenceSweep.seconds)
            if let due = nextCloud { wake = min(wake, due) }
            // SIGTERM cancels the sleep: a clean stop, not an error (serve exits 0).
            do { try await clock.sleep(until: wake) } catch is CancellationError { return }
        }
    }
}
