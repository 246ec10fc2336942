import Foundation
import OneTouchCore
import OneTouchKerberos
import OneTouchTesting
import Testing

/// The whole Kerberos flow with a planted one-time password, against a real MIT realm: the password
/// must appear in no log line, event, database byte or process argument list.
@Suite("Secret canaries", .serialized, .enabled(if: Realm.available, "krb5-kdc is not installed"))
struct SecretCanaryTests {
    static let canary = "CanaryOTP7Zq4Wm9Xv2Lp8Ns3Kd6Hf"

    @Test func theOneTimePasswordLeaksNowhere() async throws {
        let realm = try Realm()
        defer { realm.stop() }
        let base = realm.directory

        // kadmin through a wrapper that records every argument list it is started with.
        let argvLog = base + "/argv.log"
        let wrapper = base + "/kadmin-wrapper"
        try "#!/bin/sh\nprintf '%s\\n' \"$*\" >> \(argvLog)\nexec /usr/bin/kadmin \"$@\"\n".write(
            toFile: wrapper, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: wrapper)
        var settings = realm.settings
        settings.kadmin = wrapper
        let directory = MITDirectory(settings: settings)

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
        services.oneTimePasswords = { Secret(Self.canary) }
        let engine = Engine(services: services, clock: clock, owner: "canary")
        let service = HostService(
            store: store, secrets: secrets, renderer: renderer, roles: EngineTestBed.roles, domain: "onetouch.test",
            directory: directory, clock: clock, ids: SequentialIDs(), logger: logs.logger(), wake: { await engine.wake($0) })

        let host = try await service.create(.init(name: "canary-01", role: "web"), actor: "test")
        let token = secrets.hostToken(hostID: host.id, generation: 1).reveal()
        for _ in 0..<10 { await engine.runUntilIdle() }
        _ = try await service.report(hostID: host.id, token: token, .init(stage: .booted))
        for _ in 0..<10 { await engine.runUntilIdle() }
        guard case .delivered(let info, let otp) = try service.enrollment(hostID: host.id, token: token) else {
            Issue.record("the one-time password was not served")
            return
        }
        #expect(otp.reveal() == Self.canary)
        #expect(try realm.enrollAsHost(principal: info.principal, password: otp) == 0)
        _ = try await service.report(hostID: host.id, token: token, .init(stage: .volumeMounted))
        _ = try await service.report(hostID: host.id, token: token, .init(stage: .configured, exitStatus: 0))
        for _ in 0..<10 { await engine.runUntilIdle() }
        #expect(try store.host(id: host.id)?.hostState == .ready)

        // Zero hits anywhere.
        #expect(logs.all.count > 3)
        #expect(!logs.all.contains { $0.contains(Self.canary) })
        #expect(try !store.events(hostID: host.id).contains { $0.reason.contains(Self.canary) })
        for file in ["onetouch.sqlite", "onetouch.sqlite-wal"] {
            let bytes = (try? Data(contentsOf: URL(fileURLWithPath: base + "/" + file))) ?? Data()
            #expect(bytes.range(of: Data(Self.canary.utf8)) == nil, "\(file) holds the password in plaintext")
        }
        let argv = try String(contentsOfFile: argvLog, encoding: .utf8)
        #expect(argv.contains("addprinc"), "the wrapper saw the pre-registration")
        #expect(!argv.contains(Self.canary))
        let rendered = try service.renderUserData("canary-01")
        #expect(!rendered.contains(Self.canary) && !rendered.contains(token))
    }
}
