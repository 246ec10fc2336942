import Foundation
import OneTouchCore
import OneTouchKerberos
import Testing

/// A throwaway MIT realm from `scripts/krb5-testbed`, on loopback high ports, stopped by PID.
final class Realm: @unchecked Sendable {
    let directory: String
    let env: [String: String]

    static var available: Bool { FileManager.default.isExecutableFile(atPath: "/usr/sbin/krb5kdc") }

    init() throws {
        directory = NSTemporaryDirectory() + "onetouch-krb5-\(UUID().uuidString)"
        try Realm.script(["start", directory])
        let text = try String(contentsOfFile: directory + "/env", encoding: .utf8)
        var env: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { env[parts[0]] = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "'\"")) }
        }
        self.env = env
    }

    func stop() { try? Realm.script(["stop", directory]) }

    static func script(_ arguments: [String]) throws {
        try TestBedScript.run("krb5-testbed", arguments)
    }

    var settings: MITDirectory.Settings {
        var settings = MITDirectory.Settings(
            realm: env["KRB5_REALM"]!, adminServer: env["KADMIN_ADDRESS"]!, kdc: "127.0.0.1:\(env["KDC_PORT"]!)",
            principal: env["PROVISIONER_PRINCIPAL"]!, keytab: env["PROVISIONER_KEYTAB"]!)
        settings.krb5Config = env["KRB5_CONFIG"]
        return settings
    }

    /// What the bootstrap script does on the host: `kadmin -p host/NAME ktadd` with the password on stdin.
    /// Settings whose kadmin is a wrapper that appends every argument list it is started with to
    /// `argvLog` (one line per run), then runs the real kadmin.
    func recordingKadmin() throws -> (settings: MITDirectory.Settings, argvLog: String) {
        let argvLog = directory + "/argv.log"
        let wrapper = directory + "/kadmin-recording"
        try "#!/bin/sh\nprintf '%s\\n' \"$*\" >> \(argvLog)\nexec /usr/bin/kadmin \"$@\"\n".write(
            toFile: wrapper, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: wrapper)
        var settings = self.settings
        settings.kadmin = wrapper
        return (settings, argvLog)
    }

    func enrollAsHost(principal: String, password: Secret) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/kadmin")
        process.arguments = ["-p", principal, "-s", env["KADMIN_ADDRESS"]!, "ktadd", "-k", directory + "/host.keytab", principal]
        var environment = ProcessInfo.processInfo.environment
        environment["KRB5_CONFIG"] = env["KRB5_CONFIG"]
        environment["KRB5CCNAME"] = "FILE:" + directory + "/host-ccache"
        process.environment = environment
        let input = Pipe()
        process.standardInput = input
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        input.fileHandleForWriting.write(Data((password.reveal() + "\n").utf8))
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        return process.terminationStatus
    }
}

@Suite("MIT Kerberos directory against a real realm", .serialized, .enabled(if: Realm.available, "krb5-kdc is not installed"))
struct MITDirectoryTests {
    @Test func hostEnrollsWithTheOneTimePasswordExactlyOnce() async throws {
        let realm = try Realm()
        defer { realm.stop() }
        let directory = MITDirectory(settings: realm.settings)
        let host = DirectoryHost(fqdn: "web-01.onetouch.test")
        #expect(try await directory.lookup(host) == nil)
        let password = SecretBox.oneTimePassword()
        let registration = try await directory.preregister(host, proposedPassword: password)
        #expect(registration.oneTimePassword == password)
        #expect(try await directory.lookup(host) == DirectoryEntry(enrolled: false, keyState: registration.baseline))
        #expect(try await directory.isEnrolled(host, baseline: registration.baseline) == false)

        let principal = directory.enrollmentInfo(for: host).principal
        #expect(try realm.enrollAsHost(principal: principal, password: password) == 0)
        #expect(try await directory.isEnrolled(host, baseline: registration.baseline))
        #expect(try realm.enrollAsHost(principal: principal, password: password) != 0, "the password works only once")
    }

    @Test func preregisterIsIdempotentAndReissuesOnlyAnUndeliveredPassword() async throws {
        let realm = try Realm()
        defer { realm.stop() }
        let directory = MITDirectory(settings: realm.settings)
        let host = DirectoryHost(fqdn: "web-02.onetouch.test")
        let first = SecretBox.oneTimePassword()
        _ = try await directory.preregister(host, proposedPassword: first)
        // Interrupted and run again with the same stored password: one principal, same password works.
        let again = try await directory.preregister(host, proposedPassword: first)
        #expect(try realm.enrollAsHost(principal: directory.enrollmentInfo(for: host).principal, password: first) == 0)
        #expect(try await directory.isEnrolled(host, baseline: again.baseline))
    }

    @Test func aNewHostTakesOneKadminRunAndItsBaselineIsTheRealKeyVersion() async throws {
        let realm = try Realm()
        defer { realm.stop() }
        let (settings, argvLog) = try realm.recordingKadmin()
        let directory = MITDirectory(settings: settings)
        let host = DirectoryHost(fqdn: "web-05.onetouch.test")
        let registration = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())
        let runs = try String(contentsOfFile: argvLog, encoding: .utf8).split(separator: "\n")
        #expect(runs.count == 1 && runs.first?.contains("addprinc") == true, "\(runs)")
        #expect(try await directory.lookup(host)?.keyState == registration.baseline)
    }

    @Test func someoneElsesEnrolledPrincipalIsRefusedUnlessItIsOurs() async throws {
        let realm = try Realm()
        defer { realm.stop() }
        let directory = MITDirectory(settings: realm.settings)
        let host = DirectoryHost(fqdn: "web-06.onetouch.test")
        let theirs = SecretBox.oneTimePassword()
        _ = try await directory.preregister(host, proposedPassword: theirs)
        #expect(try realm.enrollAsHost(principal: directory.enrollmentInfo(for: host).principal, password: theirs) == 0)
        do {
            _ = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())
            Issue.record("an enrolled principal was given a new password")
        } catch let error as StepError {
            #expect(error.errorClass == .permanent)
            #expect(error.message.contains("enrolled by another machine"))
        }
        #expect(try await directory.lookup(host)?.keyState == "2", "their key is left alone")
        // An entry an earlier attempt of ours made (its key moved with each password set) is replaced.
        let ours = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword(), ownsEntry: true)
        #expect(ours.baseline == "3")
    }

    @Test func removeDeletesThePrincipalAndTwiceIsFine() async throws {
        let realm = try Realm()
        defer { realm.stop() }
        let directory = MITDirectory(settings: realm.settings)
        let host = DirectoryHost(fqdn: "web-03.onetouch.test")
        _ = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())
        try await directory.remove(host)
        #expect(try await directory.lookup(host) == nil)
        try await directory.remove(host)
    }

    @Test func outsideTheACLIsRefusedWithAClearReason() async throws {
        let realm = try Realm()
        defer { realm.stop() }
        var settings = realm.settings
        settings.keytab = realm.directory + "/missing.keytab"
        let directory = MITDirectory(settings: settings)
        do {
            _ = try await directory.lookup(DirectoryHost(fqdn: "web-04.onetouch.test"))
            Issue.record("a missing keytab was accepted")
        } catch let error as StepError {
            #expect(error.message.contains("kadmin getprinc"))
        }
    }

    @Test func terseOutputGivesTheKeyVersion() {
        let line =
            "\"host/vm4.prov.test@PROV.TEST\"\t0\t1795767874\t0\t36000\t\"prov/admin@PROV.TEST\"\t1795767874\t0\t2\t1\t\"[none]\"\t604800\t0\t0\t0\t2\t1\t2\t18\t0\t1\t2\t17\t0"
        #expect(MITDirectory.parseTerseKeyVersion(line) == 2)
    }
}
