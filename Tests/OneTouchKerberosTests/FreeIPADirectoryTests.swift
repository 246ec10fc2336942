import Foundation
import OneTouchCore
import OneTouchHTTP
import Testing

@testable import OneTouchKerberos

#if canImport(Glibc)
    import Glibc
#endif

/// A FreeIPA JSON-RPC test server from `scripts/freeipa-testbed`, stopped by PID.
///
/// It runs as `localhost` (certificate SAN `DNS:localhost` only, like an IPA-issued certificate), so
/// the client connects to the name it verifies and sends as Referer; `127.0.0.1` fails TLS. `profile`
/// chooses the FreeIPA release line it imitates (`4.9-pre-cve`, `4.12`, `master`).
final class IPATestBed: @unchecked Sendable {
    static let hostname = "localhost"
    let directory: String
    let env: [String: String]
    let transport: AsyncHTTPClientTransport

    static var available: Bool { ["python3", "openssl"].allSatisfy(onPath) }

    static func onPath(_ tool: String) -> Bool {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)") }
    }

    init(profile: String = "4.12", arguments: String = "") throws {
        directory = NSTemporaryDirectory() + "onetouch-ipa-\(UUID().uuidString)"
        try IPATestBed.script(
            ["start", directory],
            environment: [
                "IPA_TESTBED_HOSTNAME": IPATestBed.hostname, "IPA_TESTBED_PROFILE": profile, "IPA_TESTBED_ARGS": arguments,
            ])
        let text = try String(contentsOfFile: directory + "/env", encoding: .utf8)
        var env: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { env[parts[0]] = parts[1] }
        }
        self.env = env
        do { transport = try AsyncHTTPClientTransport(caBundle: env["IPA_CA_BUNDLE"]!) } catch {
            try? IPATestBed.script(["stop", directory])
            throw error
        }
    }

    /// Stops the server and removes its folder (certificate, admin password).
    func stop() {
        try? IPATestBed.script(["stop", directory])
        try? FileManager.default.removeItem(atPath: directory)
    }

    static func script(_ arguments: [String], environment extra: [String: String] = [:]) throws {
        try TestBedScript.run("freeipa-testbed", arguments, environment: extra)
    }

    var password: Secret {
        Secret((try? String(contentsOfFile: env["IPA_PASSWORD_FILE"]!, encoding: .utf8)) ?? "")
    }

    func settings(ipAddressInDNS: Bool = false) -> FreeIPADirectory.Settings {
        FreeIPADirectory.Settings(
            server: IPATestBed.hostname, port: Int(env["IPA_PORT"]!)!, realm: env["IPA_REALM"]!, domain: "onetouch.test",
            user: env["IPA_USER"]!, password: password, ipAddressInDNS: ipAddressInDNS)
    }

    func directory(ipAddressInDNS: Bool = false) -> FreeIPADirectory {
        FreeIPADirectory(settings: settings(ipAddressInDNS: ipAddressInDNS), transport: transport)
    }

    /// Calls a test hook: POST with a JSON body, or GET without one. Returns the status and the JSON.
    func hook(_ name: String, _ body: [String: Any]? = nil) async throws -> (status: Int, json: Any) {
        let url = URL(string: "https://\(IPATestBed.hostname):\(env["IPA_PORT"]!)/_test/\(name)")!
        let request = HTTPRequestData(
            method: body == nil ? "GET" : "POST", url: url, headers: [("Content-Type", "application/json")],
            body: try body.map { try JSONSerialization.data(withJSONObject: $0) } ?? Data())
        let response = try await transport.send(request, timeout: .seconds(10))
        return (response.status, try JSONSerialization.jsonObject(with: response.body))
    }

    /// `/_test/enroll`: what `ipa-join -w OTP` does on the host. Returns the HTTP status.
    func enroll(_ fqdn: String, _ password: Secret) async throws -> Int {
        try await hook("enroll", ["fqdn": fqdn, "password": password.reveal()]).status
    }

    func hosts() async throws -> [String: [String: Any]] {
        let state = try await hook("state").json as? [String: Any]
        return state?["hosts"] as? [String: [String: Any]] ?? [:]
    }

    /// Every call in order, logins included (`method` "login_password").
    func calls() async throws -> [[String: Any]] {
        try await hook("calls?detail=1").json as? [[String: Any]] ?? []
    }

    func logins() async throws -> Int {
        try await calls().filter { $0["method"] as? String == "login_password" }.count
    }

    func methods() async throws -> [String] {
        try await calls().compactMap { $0["method"] as? String }.filter { $0 != "login_password" }
    }

    func options(of method: String) async throws -> [String: Any] {
        try await calls().first { $0["method"] as? String == method }?["options"] as? [String: Any] ?? [:]
    }
}

/// Drops the Referer from JSON-RPC calls, as a misconfigured proxy would.
struct RefererDroppingTransport: HTTPTransport {
    let base: any HTTPTransport
    func send(_ request: HTTPRequestData, timeout: Duration) async throws -> HTTPResponseData {
        var request = request
        if request.url.path == "/ipa/session/json" {
            request.headers.removeAll { $0.0.caseInsensitiveCompare("Referer") == .orderedSame }
        }
        return try await base.send(request, timeout: timeout)
    }
}

/// Sends every request with the given Referer, as a client that puts the port in it would.
struct RefererRewritingTransport: HTTPTransport {
    let base: any HTTPTransport
    let referer: String
    func send(_ request: HTTPRequestData, timeout: Duration) async throws -> HTTPResponseData {
        var request = request
        request.headers.removeAll { $0.0.caseInsensitiveCompare("Referer") == .orderedSame }
        request.headers.append(("Referer", referer))
        return try await base.send(request, timeout: timeout)
    }
}

/// Answers from a script and records what was sent.
actor ScriptedTransport: HTTPTransport {
    var responses: [HTTPResponseData]
    var requests: [HTTPRequestData] = []

    init(_ responses: [HTTPResponseData]) { self.responses = responses }

    func send(_ request: HTTPRequestData, timeout: Duration) async throws -> HTTPResponseData {
        requests.append(request)
        guard !responses.isEmpty else { throw HTTPTransportError.connectionFailed("no scripted response left") }
        return responses.removeFirst()
    }
}

func expectStepError(
    _ errorClass: ErrorClass, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void
) async -> StepError? {
    do {
        try await body()
        Issue.record("expected a \(errorClass.rawValue) error, got success", sourceLocation: sourceLocation)
        return nil
    } catch let error as StepError {
        #expect(error.errorClass == errorClass, "\(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected a StepError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

@Suite("FreeIPA directory")
struct FreeIPADirectoryTests {
    @Test func theLoginFormIsURLEncodedAndTheSessionCookieIsSentBackUnchanged() async throws {
        let cookie = "ipa_session=MagBearerToken=abc%2Bdef%2F%3D%3D"
        let transport = ScriptedTransport([
            HTTPResponseData(status: 200, headers: [("Set-Cookie", cookie + "; Path=/ipa; Secure; HttpOnly")]),
            HTTPResponseData(
                status: 200,
                body: Data(
                    #"{"result":{"result":{"has_keytab":true,"has_password":false},"value":"h.example.test"},"error":null,"id":1}"#.utf8)),
        ])
        let settings = FreeIPADirectory.Settings(
            server: "ipa.example.test", realm: "EXAMPLE.TEST", domain: "example.test", user: "admin",
            password: Secret("p&ss=w+rd %é"))
        let directory = FreeIPADirectory(settings: settings, transport: transport)
        #expect(try await directory.lookup(DirectoryHost(fqdn: "h.example.test")) == DirectoryEntry(enrolled: true, keyState: "keytab"))

        let requests = await transport.requests
        try #require(requests.count == 2)
        let login = requests[0]
        #expect(login.url.absoluteString == "https://ipa.example.test/ipa/session/login_password")
        #expect(String(decoding: login.body, as: UTF8.self) == "user=admin&password=p%26ss%3Dw%2Brd%20%25%C3%A9")
        #expect(login.header("Content-Type") == "application/x-www-form-urlencoded")
        #expect(login.header("Accept") == "text/plain")
        #expect(login.header("Referer") == "https://ipa.example.test/ipa")

        let call = requests[1]
        #expect(call.url.absoluteString == "https://ipa.example.test/ipa/session/json")
        #expect(call.header("Cookie") == cookie)
        #expect(call.header("Referer") == "https://ipa.example.test/ipa")
        let envelope = try #require(try JSONSerialization.jsonObject(with: call.body) as? [String: Any])
        #expect(envelope["method"] as? String == "host_show")
        let params = try #require(envelope["params"] as? [Any])
        #expect(params.count == 2)
        #expect(params.first as? [String] == ["h.example.test"])
        #expect((params.last as? [String: Any])?["version"] as? String == "2.251")
        #expect(envelope["id"] is Int)
    }

    @Test func aHostWithAPasswordAndNoKeytabIsNotEnrolled() throws {
        let entry = try FreeIPADirectory.entry(.object(["has_keytab": .bool(false), "has_password": .bool(true)]), method: "host_show")
        #expect(entry == DirectoryEntry(enrolled: false, keyState: "password"))
        let disabled = try FreeIPADirectory.entry(.object(["has_keytab": .bool(false), "has_password": .bool(false)]), method: "host_show")
        #expect(disabled == DirectoryEntry(enrolled: false, keyState: "none"))
    }

    @Test func theEnrollmentAnswerCarriesDomainAndTheIPACA() {
        var settings = FreeIPADirectory.Settings(
            server: "ipa.example.com", port: 8443, realm: "EXAMPLE.COM", domain: "example.com", user: "admin", password: Secret("x"))
        settings.caCertificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        #expect(settings.referer == "https://ipa.example.com/ipa", "never the port")
        let info = FreeIPADirectory(settings: settings, transport: ScriptedTransport([])).enrollmentInfo(
            for: DirectoryHost(fqdn: "web-01.example.com"))
        #expect(info.domain == "example.com")
        #expect(info.caCertificate == settings.caCertificate)
        #expect(EnrollmentBody(info, oneTimePassword: "otp").caCertificate == settings.caCertificate)
    }

    @Suite("against the FreeIPA test server", .serialized, .enabled(if: IPATestBed.available, "python3 or openssl is missing"))
    struct AgainstTheTestServer {
        @Test func preregisterAddsTheHostWithAServerGeneratedPasswordAndLookupFindsIt() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = bed.directory()
            let host = DirectoryHost(fqdn: "web-01.onetouch.test", ipAddress: "10.0.1.23")
            #expect(try await directory.lookup(host) == nil)

            let proposed = SecretBox.oneTimePassword()
            let registration = try await directory.preregister(host, proposedPassword: proposed)
            let otp = registration.oneTimePassword.reveal()
            #expect(registration.oneTimePassword != proposed, "the password in effect is the server's randompassword")
            #expect(otp.count == 23 && otp.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
            #expect(registration.baseline == "password")
            #expect(try await directory.lookup(host) == DirectoryEntry(enrolled: false, keyState: "password"))
            #expect(try await directory.isEnrolled(host, baseline: registration.baseline) == false)

            #expect(try await bed.hosts()["web-01.onetouch.test"]?["otp"] as? String == otp)
            let options = try await bed.options(of: "host_add")
            #expect(options["random"] as? Bool == true)
            #expect(options["force"] as? Bool == true, "ipAddressInDNS is off: no DNS check, no record")
            #expect(options["ip_address"] == nil)
            #expect(options["version"] as? String == "2.251")
            #expect(try await bed.logins() == 1, "one session for all calls")
        }

        @Test func theHostEnrollsWithTheOneTimePasswordExactlyOnce() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = bed.directory()
            let host = DirectoryHost(fqdn: "web-02.onetouch.test")
            let registration = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())

            #expect(try await bed.enroll(host.fqdn, registration.oneTimePassword) == 200)
            #expect(try await directory.isEnrolled(host, baseline: registration.baseline))
            #expect(try await directory.lookup(host) == DirectoryEntry(enrolled: true, keyState: "keytab"))
            #expect(try await bed.enroll(host.fqdn, registration.oneTimePassword) == 401, "the password works only once")

            let info = directory.enrollmentInfo(for: host)
            #expect(
                info
                    == EnrollmentInfo(
                        backend: "freeipa", realm: "ONETOUCH.TEST", server: "localhost",
                        principal: "host/web-02.onetouch.test@ONETOUCH.TEST", domain: "onetouch.test"))
            #expect(try await bed.hosts()[host.fqdn]?["krbprincipalname"] as? String == info.principal)
        }

        @Test func preregisteringAnUnenrolledHostAgainReissuesItsPassword() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = bed.directory()
            let host = DirectoryHost(fqdn: "web-03.onetouch.test")
            let first = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())
            let second = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())

            #expect(first.oneTimePassword != second.oneTimePassword)
            #expect(second.baseline == "password")
            #expect(try await bed.hosts().count == 1)
            #expect(try await bed.methods() == ["host_add", "host_add", "host_show", "host_mod"])
            #expect(try await bed.enroll(host.fqdn, first.oneTimePassword) == 401, "the first password no longer works")
            #expect(try await bed.enroll(host.fqdn, second.oneTimePassword) == 200)
            #expect(try await directory.isEnrolled(host, baseline: second.baseline))
        }

        @Test func preregisteringAnEnrolledHostIsRefusedPermanently() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = bed.directory()
            let host = DirectoryHost(fqdn: "web-04.onetouch.test")
            let registration = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())
            #expect(try await bed.enroll(host.fqdn, registration.oneTimePassword) == 200)

            let error = await expectStepError(.permanent) {
                _ = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())
            }
            #expect(error?.message.contains("already has") == true && error?.message.contains("enrolled by another machine") == true)
            #expect(error?.message.contains(host.fqdn) == true)
            #expect(try await bed.methods().contains("host_mod") == false, "an enrolled host's key is left alone")
            #expect(try await directory.isEnrolled(host, baseline: registration.baseline))
        }

        @Test func anExpiredSessionIsRenewedWithoutTheCallerNoticing() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = bed.directory()
            let host = DirectoryHost(fqdn: "web-05.onetouch.test")
            #expect(try await directory.lookup(host) == nil)
            #expect(try await bed.hook("expire-sessions", [:]).status == 200)

            _ = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())
            #expect(try await directory.lookup(host)?.enrolled == false)
            #expect(try await bed.logins() == 2)
            #expect(try await bed.hosts().count == 1, "the refused call was repeated once, not twice")
        }

        @Test func concurrentCallsAfterExpiryShareOneNewLogin() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = bed.directory()
            _ = try await directory.ping()
            #expect(try await bed.hook("expire-sessions", [:]).status == 200)

            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<8 {
                    group.addTask {
                        let entry = try await directory.lookup(DirectoryHost(fqdn: "db-\(index).onetouch.test"))
                        #expect(entry == nil)
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await bed.logins() == 2)
        }

        @Test func aServerNameThatIsNotInTheCertificateWaitsForAPerson() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            var settings = bed.settings()
            settings.server = "127.0.0.1"  // FreeIPA's certificate names only its FQDN
            let directory = FreeIPADirectory(settings: settings, transport: bed.transport)

            let error = await expectStepError(.needsHuman) { _ = try await directory.lookup(DirectoryHost(fqdn: "web-06.onetouch.test")) }
            #expect(error?.message.contains("TLS to https://127.0.0.1:") == true, "\(String(describing: error))")
            #expect(error?.hint?.contains("FQDN as in its certificate") == true)
            #expect(try await bed.logins() == 0)
        }

        @Test func aCAThatIsNotTheIPACAWaitsForAPerson() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            // the system trust store does not hold the IPA CA
            let directory = FreeIPADirectory(settings: bed.settings(), transport: AsyncHTTPClientTransport())

            let error = await expectStepError(.needsHuman) { _ = try await directory.lookup(DirectoryHost(fqdn: "web-06.onetouch.test")) }
            #expect(error?.hint?.contains("ca_bundle") == true, "\(String(describing: error))")
        }

        @Test(arguments: ["4.9-pre-cve", "4.12", "master"])
        func callsWithoutARefererWaitForAPersonWithTheRefererHint(profile: String) async throws {
            let bed = try IPATestBed(profile: profile)
            defer { bed.stop() }
            let directory = FreeIPADirectory(settings: bed.settings(), transport: RefererDroppingTransport(base: bed.transport))

            let error = await expectStepError(.needsHuman) { _ = try await directory.lookup(DirectoryHost(fqdn: "web-07.onetouch.test")) }
            let expected = profile == "4.9-pre-cve" ? "RefererError 911" : "(HTTP 400: denied)"
            #expect(error?.message.contains(expected) == true, "\(String(describing: error))")
            #expect(error?.message.contains("Referer https://localhost/ipa") == true)
            #expect(error?.hint?.contains("https://<that name>/ipa") == true)
        }

        @Test(arguments: ["4.9-pre-cve", "4.12", "master"])
        func theRefererNeverCarriesThePortAndWithAPortIsRefused(profile: String) async throws {
            let bed = try IPATestBed(profile: profile)
            defer { bed.stop() }
            #expect(bed.settings().port != 443)
            #expect(bed.settings().referer == "https://localhost/ipa")
            _ = try await bed.directory().lookup(DirectoryHost(fqdn: "web-07.onetouch.test"))

            // what the client sent before: the port in the Referer, refused by every release
            let withPort = RefererRewritingTransport(base: bed.transport, referer: "https://localhost:\(bed.settings().port)/ipa")
            let directory = FreeIPADirectory(settings: bed.settings(), transport: withPort)
            let error = await expectStepError(.needsHuman) { _ = try await directory.lookup(DirectoryHost(fqdn: "web-07.onetouch.test")) }
            #expect(error?.hint?.contains("Referer") == true, "\(String(describing: error))")
        }

        @Test(arguments: ["4.12", "master"])
        func aLockedAccountWaitsForAPersonWithTheUnlockHint(profile: String) async throws {
            let bed = try IPATestBed(profile: profile)
            defer { bed.stop() }
            #expect(try await bed.hook("user", ["state": "locked"]).status == 200)
            let error = await expectStepError(.needsHuman) {
                _ = try await bed.directory().lookup(DirectoryHost(fqdn: "web-07.onetouch.test"))
            }
            // 4.9-4.12 say invalid-password for a locked user (rpcserver.py:1151), master says user-locked
            #expect(error?.message.contains(profile == "master" ? "user-locked" : "invalid-password") == true)
            #expect(error?.hint?.contains(profile == "master" ? "ipa user-unlock admin" : "ipa user-status admin") == true)
        }

        @Test func anExpiredTicketBehindAKnownCookieMeansANewLogin() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = bed.directory()
            let host = DirectoryHost(fqdn: "web-07.onetouch.test")
            _ = try await directory.lookup(host)
            #expect(try await bed.hook("expire-sessions", ["ccache": true]).status == 200)
            #expect(try await directory.lookup(host) == nil)
            #expect(try await bed.logins() == 2, "the empty logout cookie is not adopted")
        }

        @Test func aDNSClashOnHostAddWaitsForAPersonAndIsNotTakenForAnExistingHost() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = bed.directory(ipAddressInDNS: true)
            #expect(try await bed.hook("dns", ["a": "10.0.1.30", "fqdn": "old.onetouch.test"]).status == 200)
            let host = DirectoryHost(fqdn: "web-30.onetouch.test", ipAddress: "10.0.1.30")
            let error = await expectStepError(.needsHuman) {
                _ = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())
            }
            #expect(error?.message.contains("IP address 10.0.1.30 is already assigned in domain onetouch.test.") == true)
            #expect(error?.hint?.contains("stale A or PTR record") == true)
            #expect(try await bed.methods() == ["host_add", "host_show"], "no host_mod, no retry loop")
        }

        @Test func anExistingHostWithItsOwnDNSRecordGetsANewPasswordAgain() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = bed.directory(ipAddressInDNS: true)
            let host = DirectoryHost(fqdn: "web-31.onetouch.test", ipAddress: "10.0.1.31")
            _ = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())
            // the answer was lost: host_add again clashes with the host's own record (4002), the host exists
            let again = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())
            #expect(try await bed.hosts()[host.fqdn]?["otp"] as? String == again.oneTimePassword.reveal())
            #expect(try await bed.methods() == ["host_add", "host_add", "host_show", "host_mod"])
        }

        @Test func dnsRecordsThatFreeIPACouldNotAddWaitForAPerson() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            #expect(try await bed.hook("dns", ["fail_records": true]).status == 200)
            let error = await expectStepError(.needsHuman) {
                _ = try await bed.directory(ipAddressInDNS: true).preregister(
                    DirectoryHost(fqdn: "web-32.onetouch.test", ipAddress: "10.0.1.32"), proposedPassword: SecretBox.oneTimePassword())
            }
            #expect(error?.message.contains("but not its DNS records") == true, "\(String(describing: error))")
        }

        @Test func withoutIPADNSTheAddressIsIgnoredAndNothingFails() async throws {
            let bed = try IPATestBed(arguments: "--no-dns")
            defer { bed.stop() }
            let directory = bed.directory(ipAddressInDNS: true)
            let host = DirectoryHost(fqdn: "web-33.onetouch.test", ipAddress: "10.0.1.33")
            _ = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())
            try await directory.remove(host)
            #expect(try await directory.lookup(host) == nil)
        }

        @Test func namesLongerThanFreeIPAAllowsAreRefusedBeforeAnyCall() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let long = String(repeating: "a", count: 65 - ".onetouch.test".count) + ".onetouch.test"
            let error = await expectStepError(.permanent) {
                _ = try await bed.directory().preregister(DirectoryHost(fqdn: long), proposedPassword: SecretBox.oneTimePassword())
            }
            #expect(error?.message.contains("at most 64") == true)
            #expect(try await bed.methods().isEmpty)
        }

        @Test func missingPrivilegesWaitForAPerson() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = bed.directory()
            let existing = DirectoryHost(fqdn: "web-08.onetouch.test")
            _ = try await directory.preregister(existing, proposedPassword: SecretBox.oneTimePassword())
            #expect(try await bed.hook("acl", ["deny": true]).status == 200)

            let added = await expectStepError(.needsHuman) {
                _ = try await directory.preregister(
                    DirectoryHost(fqdn: "web-09.onetouch.test"), proposedPassword: SecretBox.oneTimePassword())
            }
            #expect(added?.message.contains("ACIError 2100: Insufficient access") == true, "\(String(describing: added))")
            #expect(added?.hint?.contains("Host Administrators") == true)
            #expect(added?.hint?.contains("DNS Administrators") == false, "ip_address_in_dns is off")
            #expect(added?.hint?.contains("{host}") == true)
            let removed = await expectStepError(.needsHuman) { try await directory.remove(existing) }
            #expect(removed?.message.contains("host_del") == true)
            #expect(try await directory.lookup(existing) != nil)
        }

        @Test func aWrongPasswordWaitsForAPersonAndIsNeverShown() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            var settings = bed.settings()
            let wrong = "Wr0ng&pass=word%-\(UUID().uuidString)"
            settings.password = Secret(wrong)
            let directory = FreeIPADirectory(settings: settings, transport: bed.transport)

            let error = await expectStepError(.needsHuman) {
                _ = try await directory.preregister(
                    DirectoryHost(fqdn: "web-10.onetouch.test"), proposedPassword: SecretBox.oneTimePassword())
            }
            let unwrapped = try #require(error)
            #expect(unwrapped.message.contains("invalid-password"))
            #expect(unwrapped.message.contains("'admin'"))
            for text in [unwrapped.message, unwrapped.hint ?? "", unwrapped.description, String(reflecting: unwrapped), "\(settings)"] {
                #expect(!text.contains(wrong))
                #expect(!text.contains(bed.password.reveal()))
            }
            #expect(try await bed.hosts().isEmpty)
        }

        @Test func removeDeletesTheHostAndItsDNSAndAgainIsFine() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = bed.directory()
            let host = DirectoryHost(fqdn: "web-11.onetouch.test")
            _ = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())

            try await directory.remove(host)
            #expect(try await directory.lookup(host) == nil)
            try await directory.remove(host)
            #expect(try await bed.options(of: "host_del")["updatedns"] == nil, "DNS is left alone")
            #expect(try await bed.methods().filter { $0 == "host_del" }.count == 2)

            let managed = bed.directory(ipAddressInDNS: true)
            let withDNS = DirectoryHost(fqdn: "web-11b.onetouch.test", ipAddress: "10.0.1.11")
            _ = try await managed.preregister(withDNS, proposedPassword: SecretBox.oneTimePassword())
            try await managed.remove(withDNS)
            let calls = try await bed.calls().filter { $0["method"] as? String == "host_del" }
            #expect((calls.last?["options"] as? [String: Any])?["updatedns"] as? Bool == true)
            let state = try await bed.hook("state").json as? [String: Any]
            #expect((state?["a_records"] as? [String: Any])?.isEmpty == true, "its A record went with it")
        }

        @Test func withIPAddressInDNSTheAddressIsSentInsteadOfForce() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = bed.directory(ipAddressInDNS: true)
            let host = DirectoryHost(fqdn: "web-12.onetouch.test", ipAddress: "10.0.1.12")
            _ = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())

            let options = try await bed.options(of: "host_add")
            #expect(options["ip_address"] as? String == "10.0.1.12")
            #expect(options["force"] == nil)
            #expect(try await bed.hosts()[host.fqdn]?["ip_address"] as? String == "10.0.1.12")
        }

        @Test func withIPAddressInDNSAHostWithoutAnAddressMustResolve() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = bed.directory(ipAddressInDNS: true)
            let host = DirectoryHost(fqdn: "web-13.onetouch.test")

            let error = await expectStepError(.permanent) {
                _ = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())
            }
            #expect(error?.message.contains("DNSNotARecordError 4019") == true, "\(String(describing: error))")
            #expect(error?.hint?.contains("ip_address_in_dns") == true)
            #expect(error?.hint?.contains("{host}") == true)

            #expect(try await bed.hook("dns", ["fqdn": host.fqdn]).status == 200)
            _ = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())
            #expect(try await directory.lookup(host)?.enrolled == false)
        }

        @Test func serverAndDatabaseFailuresAreTransient() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = bed.directory()
            let host = DirectoryHost(fqdn: "web-14.onetouch.test")
            #expect(try await bed.hook("fail", ["method": "host_show", "http_status": 503]).status == 200)
            let http = await expectStepError(.transient) { _ = try await directory.lookup(host) }
            #expect(http?.message == "FreeIPA host_show: HTTP 503 from localhost: Server is unwilling to perform")
            #expect(try await bed.hook("fail", ["method": "host_show", "http_status": 500]).status == 200)
            let crash = await expectStepError(.transient) { _ = try await directory.lookup(host) }
            #expect(crash?.message == "FreeIPA host_show: HTTP 500 from localhost: 500 Internal Server Error")
            // DatabaseTimeout, TaskTimeout, TimeLimitExceeded (subclasses of 4203/4204) and the resolver
            // error of verify_host_resolvable (ipalib/errors.py; ipalib/util.py:110-116).
            for (code, name) in [(4211, "DatabaseTimeout"), (4213, "TaskTimeout"), (4214, "TimeLimitExceeded"), (4401, "DNSResolverError")]
            {
                #expect(
                    try await bed.hook("fail", ["method": "host_show", "code": code, "name": name, "message": "injected"]).status == 200)
                let error = await expectStepError(.transient) { _ = try await directory.lookup(host) }
                #expect(error?.message.contains("\(name) \(code)") == true, "\(String(describing: error))")
            }

            let failure: [String: Any] = [
                "method": "host_show", "code": 4203, "name": "DatabaseError", "message": "Server is unwilling to perform",
            ]
            #expect(try await bed.hook("fail", failure).status == 200)
            let database = await expectStepError(.transient) { _ = try await directory.lookup(host) }
            #expect(database?.message.contains("DatabaseError 4203") == true)

            #expect(try await directory.lookup(host) == nil, "the next call goes through")
        }

        @Test func aHostAddThatCommittedButWhoseAnswerCameTooLateIsRecoveredWithANewPassword() async throws {
            // FreeIPA's four workers are busy: host_add commits, but its answer comes after the client
            // gave up. The retry finds the host (4002), sees it has no keytab, and issues a new
            // password with host_mod: the one the host gets is the one in effect.
            let bed = try IPATestBed()
            defer { bed.stop() }
            var settings = bed.settings()
            settings.requestTimeout = .seconds(1)
            let directory = FreeIPADirectory(settings: settings, transport: bed.transport)
            let host = DirectoryHost(fqdn: "web-18.onetouch.test")
            _ = try await directory.ping()
            #expect(try await bed.hook("slow", ["method": "host_add", "seconds": 3]).status == 200)
            let lost = await expectStepError(.transient) {
                _ = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())
            }
            #expect(lost != nil)
            #expect(try await bed.hosts()[host.fqdn] != nil, "the host was added although the answer was lost")

            let registration = try await directory.preregister(host, proposedPassword: SecretBox.oneTimePassword())
            #expect(try await bed.methods() == ["ping", "host_add", "host_add", "host_show", "host_mod"])
            #expect(try await bed.hosts()[host.fqdn]?["otp"] as? String == registration.oneTimePassword.reveal())
            #expect(try await bed.enroll(host.fqdn, registration.oneTimePassword) == 200)
        }

        @Test func aNotFoundFromHostAddIsAPermanentFailureNotAnAbsentHost() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = bed.directory(ipAddressInDNS: true)
            let failure: [String: Any] = [
                "method": "host_add", "code": 4001, "name": "NotFound", "message": "onetouch.test.: DNS zone not found",
            ]
            #expect(try await bed.hook("fail", failure).status == 200)
            let error = await expectStepError(.needsHuman) {
                _ = try await directory.preregister(
                    DirectoryHost(fqdn: "web-16.onetouch.test", ipAddress: "10.0.1.16"), proposedPassword: SecretBox.oneTimePassword())
            }
            #expect(error?.message == "FreeIPA host_add failed: NotFound 4001: onetouch.test.: DNS zone not found")
            #expect(error?.hint?.contains("DNS Administrators") == true)
        }

        @Test func aUserWithoutDNSPrivilegesIsToldWhichPrivilegeIsMissing() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            #expect(try await bed.hook("dns", ["readable": false]).status == 200)  // Host Administrators only
            let error = await expectStepError(.needsHuman) {
                _ = try await bed.directory(ipAddressInDNS: true).preregister(
                    DirectoryHost(fqdn: "web-17.onetouch.test", ipAddress: "10.0.1.17"), proposedPassword: SecretBox.oneTimePassword())
            }
            #expect(error?.message.contains("DNS zone onetouch.test. not found") == true, "\(String(describing: error))")
            #expect(error?.hint?.contains("give admin the DNS Administrators privilege") == true)
            #expect(try await bed.hosts().isEmpty)
        }

        @Test func anUnreachableServerIsTransient() async throws {
            let bed = try IPATestBed()
            var settings = bed.settings()
            // AsyncHTTPClient retries refused connections until the deadline: keep it short.
            settings.requestTimeout = .seconds(2)
            let directory = FreeIPADirectory(settings: settings, transport: bed.transport)
            bed.stop()
            let error = await expectStepError(.transient) { _ = try await directory.lookup(DirectoryHost(fqdn: "web-15.onetouch.test")) }
            #expect(error?.message.contains("cannot reach https://localhost:") == true, "\(String(describing: error))")
        }
    }
}
