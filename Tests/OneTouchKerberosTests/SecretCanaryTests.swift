import Foundation
import OneTouchCore
import OneTouchKerberos
import OneTouchTesting
import Testing

/// The whole Kerberos flow through the real engine, against a real MIT realm and the FreeIPA test
/// server: the one-time password and the admin credential must appear in no log line, event,
/// database byte, process argument list or rendered user-data.
@Suite("Secret canaries", .serialized)
struct SecretCanaryTests {
    static let canary = "CanaryOTP7Zq4Wm9Xv2Lp8Ns3Kd6Hf"

    /// What a run leaves behind to search.
    struct Run {
        var logs: [String]
        var events: [String]
        var database: Data
        var rendered: String
        var oneTimePassword: Secret
        var ready: Bool

        func leaks(_ secret: String) -> [String] {
            var places: [String] = []
            if logs.contains(where: { $0.contains(secret) }) { places.append("logs") }
            if events.contains(where: { $0.contains(secret) }) { places.append("events") }
            if database.range(of: Data(secret.utf8)) != nil { places.append("database") }
            if rendered.contains(secret) { places.append("user-data") }
            return places
        }
    }

    /// Drives one host to ready with `directory`; `enroll` plays the host's Kerberos enrollment.
    static func run(
        directory: any Directory, base: String, plantPassword: Bool,
        enroll: @escaping @Sendable (EnrollmentInfo, Secret) async throws -> Bool
    ) async throws -> Run {
        let logs = LogCapture()
        let clock = ManualClock()
        let store = try Store(path: base + "/onetouch.sqlite")
        let secrets = SecretBox(masterKey: try SecretBox.loadOrCreateMasterKey(at: base + "/master.key"))
        let renderer = UserDataRenderer(
            publicURL: "http://127.0.0.1:1", configRepository: "https://git.test/c.git", configBranch: "main",
            pullPeriod: .seconds(1800))
        var services = StepServices(
            cloud: FakeCloud(), directory: directory, notifier: FakeNotifier(), store: store, secrets: secrets,
            renderer: renderer, logger: logs.logger())
        if plantPassword { services.oneTimePasswords = { Secret(canary) } }
        let engine = Engine(services: services, clock: clock, owner: "canary")
        let service = HostService(
            store: store, secrets: secrets, renderer: renderer, roles: EngineTestBed.roles, domain: "onetouch.test",
            directory: directory, clock: clock, ids: SequentialIDs(), logger: logs.logger(), wake: { await engine.wake($0, underWay: $1) })

        let host = try await service.create(.init(name: "canary-01", role: "web"), actor: "test")
        let token = secrets.hostToken(hostID: host.id, generation: 1).reveal()
        for _ in 0..<10 { await engine.runUntilIdle() }
        _ = try await service.report(hostID: host.id, token: token, .init(stage: .booted))
        for _ in 0..<10 { await engine.runUntilIdle() }
        guard case .delivered(let info, let otp) = try await service.enrollment(hostID: host.id, token: token) else {
            throw CocoaError(.featureUnsupported)
        }
        #expect(try await enroll(info, otp))
        _ = try await service.report(hostID: host.id, token: token, .init(stage: .volumeMounted))
        _ = try await service.report(hostID: host.id, token: token, .init(stage: .configured, exitStatus: 0))
        for _ in 0..<10 { await engine.runUntilIdle() }
        var database = Data()
        for file in ["onetouch.sqlite", "onetouch.sqlite-wal"] {
            database += (try? Data(contentsOf: URL(fileURLWithPath: base + "/" + file))) ?? Data()
        }
        return Run(
            logs: logs.all, events: try store.events(hostID: host.id).map { "\($0.reason) \($0.actor)" }, database: database,
            rendered: try service.renderUserData("canary-01") + token, oneTimePassword: otp,
            ready: try store.host(id: host.id)?.hostState == .ready)
    }

    @Test(.enabled(if: Realm.available, "krb5-kdc is not installed"))
    func mitOneTimePasswordLeaksNowhereNotEvenInArgv() async throws {
        let realm = try Realm()
        defer { realm.stop() }
        // kadmin through a wrapper that records every argument list it is started with.
        let (settings, argvLog) = try realm.recordingKadmin()
        let run = try await Self.run(directory: MITDirectory(settings: settings), base: realm.directory, plantPassword: true) {
            info, otp in try realm.enrollAsHost(principal: info.principal, password: otp) == 0
        }
        #expect(run.ready)
        #expect(run.oneTimePassword.reveal() == Self.canary)
        #expect(run.logs.count > 3)
        #expect(run.leaks(Self.canary) == [])
        let argv = try String(contentsOfFile: argvLog, encoding: .utf8)
        #expect(argv.contains("addprinc"), "the wrapper saw the pre-registration")
        #expect(!argv.contains(Self.canary))
    }

    @Test(.enabled(if: IPATestBed.available, "python3 or openssl is missing"))
    func freeIPAPasswordsLeakNowhere() async throws {
        let ipa = try IPATestBed()
        defer { ipa.stop() }
        let base = ipa.directory + "/orchestrator"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        let run = try await Self.run(directory: ipa.directory(), base: base, plantPassword: false) { info, otp in
            try await ipa.enroll(String(info.principal.dropFirst("host/".count).prefix { $0 != "@" }), otp) == 200
        }
        #expect(run.ready)
        #expect(run.leaks(run.oneTimePassword.reveal()) == [], "the server-generated one-time password")
        #expect(run.leaks(ipa.password.reveal()) == [], "the admin password")
    }
}
