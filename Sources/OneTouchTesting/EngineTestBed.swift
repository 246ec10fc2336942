import Foundation
import Logging
import OneTouchCore

/// An engine on a real SQLite file with fake adapters, a manual clock and simulated hosts that follow
/// the host protocol. Used by the engine tests and the benchmark.
public final class EngineTestBed: @unchecked Sendable {
    public let directory: String
    public let databasePath: String
    public let cloud: FakeCloud
    public let directoryService: FakeDirectory
    public let notifier: FakeNotifier
    public let clock: ManualClock
    public let logs = LogCapture()
    public let ids = SequentialIDs()
    /// Where the engine, the store and the adapters record (nothing unless a test gives a factory).
    public let telemetry: Telemetry
    public let masterKeyPath: String
    public var options: Engine.Options
    /// The level the engine logs at: everything by default (tests look at the lines); the benchmark
    /// uses `serve`'s default, info.
    public let logLevel: Logger.Level
    public private(set) var store: Store
    public private(set) var engine: Engine
    public private(set) var service: HostService
    /// Host names whose configuration pull should report this exit status instead of 0.
    public var configExitStatus: [String: Int] = [:]
    /// Hosts that never report in (to test deadlines).
    public var silentHosts: Set<String> = []
    public var crashHook: (@Sendable (Step, CrashPoint) throws -> Void)?
    private var reportsSent: Set<String> = []

    public static let roles = ["web": Role(name: "web", instanceType: "t3.small", volumeGiB: 20, playbook: "web.yml")]

    public init(
        cloud: FakeCloud = FakeCloud(), options: Engine.Options = EngineTestBed.defaultOptions,
        crashHook: (@Sendable (Step, CrashPoint) throws -> Void)? = nil, logLevel: Logger.Level = .trace,
        telemetry: Telemetry = Telemetry()
    ) throws {
        self.logLevel = logLevel
        self.telemetry = telemetry
        directory = NSTemporaryDirectory() + "onetouch-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        databasePath = directory + "/onetouch.sqlite"
        masterKeyPath = directory + "/master.key"
        self.cloud = cloud
        directoryService = FakeDirectory()
        notifier = FakeNotifier()
        clock = ManualClock()
        self.options = options
        self.crashHook = crashHook
        (store, engine, service) = try Self.build(
            databasePath: databasePath, masterKeyPath: masterKeyPath, cloud: cloud, directory: directoryService,
            notifier: notifier, clock: clock, ids: ids, options: options, logger: logs.logger(level: logLevel), crashHook: crashHook,
            telemetry: telemetry)
    }

    public static var defaultOptions: Engine.Options {
        var options = Engine.Options()
        options.retry = RetryPolicy(baseDelay: .seconds(1), maxDelay: .seconds(30), maxAttempts: 5, budget: .seconds(600))
        options.concurrency = 16
        return options
    }

    static func build(
        databasePath: String, masterKeyPath: String, cloud: FakeCloud, directory: FakeDirectory, notifier: FakeNotifier,
        clock: ManualClock, ids: SequentialIDs, options: Engine.Options, logger: Logger,
        crashHook: (@Sendable (Step, CrashPoint) throws -> Void)?, telemetry: Telemetry
    ) throws -> (Store, Engine, HostService) {
        let store = try Store(path: databasePath, telemetry: telemetry)
        let secrets = SecretBox(masterKey: try SecretBox.loadOrCreateMasterKey(at: masterKeyPath))
        let renderer = UserDataRenderer(
            publicURL: "http://127.0.0.1:8780", configRepository: "https://git.example.test/config.git",
            configBranch: "main", pullPeriod: .seconds(1800))
        var services = StepServices(
            cloud: MeasuredCloud(cloud, adapter: "fake", telemetry: telemetry),
            directory: MeasuredDirectory(directory, adapter: "fake", telemetry: telemetry), notifier: notifier, store: store,
            secrets: secrets, renderer: renderer, logger: logger)
        services.telemetry = telemetry
        let engine = Engine(
            services: services, options: options, clock: clock, random: SeededRandom(seed: 7), owner: "test-\(UUID())",
            crashHook: crashHook)
        let service = HostService(
            store: store, secrets: secrets, renderer: renderer, roles: roles, domain: "onetouch.test",
            directory: directory, clock: clock, ids: ids, logger: logger, wake: { await engine.wake($0, underWay: $1) })
        return (store, engine, service)
    }

    /// Simulates a crash and restart: a new store, engine and service on the same database file,
    /// with every unfinished host loaded again.
    public func restart(crashHook: (@Sendable (Step, CrashPoint) throws -> Void)? = nil) async throws {
        self.crashHook = crashHook
        (store, engine, service) = try Self.build(
            databasePath: databasePath, masterKeyPath: masterKeyPath, cloud: cloud, directory: directoryService,
            notifier: notifier, clock: clock, ids: ids, options: options, logger: logs.logger(level: logLevel), crashHook: crashHook,
            telemetry: telemetry)
        try await engine.loadUnfinishedHosts()
    }

    @discardableResult
    public func create(_ name: String) async throws -> HostRecord {
        try await service.create(.init(name: name, role: "web"), actor: "test")
    }

    /// The host is not in the state a test expected.
    public struct UnexpectedState: Error, CustomStringConvertible {
        public let description: String
    }

    /// The reason `name` failed with at `step`; throws (failing the test) when it is in any other state.
    public func failedReason(_ name: String, at step: Step) throws -> String {
        let state = try host(name).hostState
        guard case .failed(step, let reason) = state else {
            throw UnexpectedState(description: "expected \(name) failed(\(step.rawValue)), got \(state)")
        }
        return reason
    }

    public func host(_ name: String) throws -> HostRecord {
        try service.host(named: name)
    }

    /// Plays the host side for every host waiting on it, as the bootstrap script would. Returns how
    /// many hosts reported.
    @discardableResult
    public func simulateHosts() async throws -> Int {
        var reported = 0
        for host in try store.hosts(state: .waiting) where !silentHosts.contains(host.name) {
            // A host says each thing once (again only after a retry raised the report floor).
            let stage: ReportRecord.Stage = host.step == .bootstrap ? .booted : .configured
            guard reportsSent.insert("\(host.id)/\(host.generation)/\(stage.rawValue)/\(host.reportFloor(for: stage))").inserted
            else { continue }
            reported += 1
            let token = try tokenFor(host)
            switch host.step {
            case .bootstrap?:
                _ = try await service.report(hostID: host.id, token: token.reveal(), .init(stage: .booted))
            case .configPull?:
                let spec = try host.decodedSpec
                if case .delivered(_, let otp) = try await service.enrollment(hostID: host.id, token: token.reveal()) {
                    directoryService.enroll(fqdn: spec.fqdn, password: otp)
                }
                _ = try await service.report(
                    hostID: host.id, token: token.reveal(), .init(stage: .volumeMounted, volumeId: host.decodedFacts.volumeID))
                _ = try await service.report(
                    hostID: host.id, token: token.reveal(), .init(stage: .configured, exitStatus: configExitStatus[host.name] ?? 0))
            default:
                reported -= 1
            }
        }
        return reported
    }

    /// The host token as the host got it in its user-data.
    public func tokenFor(_ host: HostRecord) throws -> Secret {
        SecretBox(masterKey: try SecretBox.loadOrCreateMasterKey(at: masterKeyPath)).hostToken(
            hostID: host.id, generation: host.generation)
    }

    /// Runs the engine, plays the hosts and moves the clock until no host is left to drive (or
    /// `maxRounds` is reached).
    public func settle(maxRounds: Int = 10_000) async throws {
        for _ in 0..<maxRounds {
            await engine.runUntilIdle()
            // Time moves only when no host has anything left to say.
            if try await simulateHosts() > 0 { continue }
            guard let next = await engine.nextDue() else { return }
            if next > clock.now { clock.set(next) }
        }
    }

    /// The drift service over this bed's store, cloud, notifier and clock.
    public func drift(_ options: DriftService.Options = DriftService.Options()) -> DriftService {
        DriftService(
            store: store, hosts: service, cloud: cloud, notifier: notifier, clock: clock, logger: logs.logger(level: logLevel),
            options: options)
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}
