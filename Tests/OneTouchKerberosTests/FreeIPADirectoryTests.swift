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
/// It runs as `localhost` (certificate SANs `DNS:localhost`, `IP:127.0.0.1`), so the client connects
/// to the name it verifies and sends as Referer; `127.0.0.1` passes TLS but is the wrong Referer.
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

    init() throws {
        directory = NSTemporaryDirectory() + "onetouch-ipa-\(UUID().uuidString)"
        try IPATestBed.script(["start", directory], environment: ["IPA_TESTBED_HOSTNAME": IPATestBed.hostname])
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

        @Test func aServerNameThatIsNotTheIPAServersIsRejectedForItsReferer() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            var settings = bed.settings()
            settings.server = "127.0.0.1"  // passes TLS (IP SAN), but FreeIPA calls itself "localhost"
            let directory = FreeIPADirectory(settings: settings, transport: bed.transport)

            let error = await expectStepError(.permanent) { _ = try await directory.lookup(DirectoryHost(fqdn: "web-06.onetouch.test")) }
            #expect(error?.message.contains("Referer https://127.0.0.1:\(settings.port)/ipa") == true, "\(String(describing: error))")
            #expect(error?.hint?.contains("FQDN") == true)
        }

        @Test func callsWithoutARefererFailPermanentlyWithRefererError() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = FreeIPADirectory(settings: bed.settings(), transport: RefererDroppingTransport(base: bed.transport))

            let error = await expectStepError(.permanent) { _ = try await directory.lookup(DirectoryHost(fqdn: "web-07.onetouch.test")) }
            #expect(
                error?.message.contains("RefererError 911: Missing or invalid HTTP Referer, missing") == true,
                "\(String(describing: error))")
            #expect(error?.hint?.contains("Referer") == true)
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
            #expect(try await bed.options(of: "host_del")["updatedns"] as? Bool == true)
            #expect(try await bed.methods().filter { $0 == "host_del" }.count == 2)
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
            #expect(http?.message.contains("HTTP 503") == true)

            let failure: [String: Any] = [
                "method": "host_show", "code": 4203, "name": "DatabaseError", "message": "Server is unwilling to perform",
            ]
            #expect(try await bed.hook("fail", failure).status == 200)
            let database = await expectStepError(.transient) { _ = try await directory.lookup(host) }
            #expect(database?.message.contains("DatabaseError 4203") == true)

            #expect(try await directory.lookup(host) == nil, "the next call goes through")
        }

        @Test func aNotFoundFromHostAddIsAPermanentFailureNotAnAbsentHost() async throws {
            let bed = try IPATestBed()
            defer { bed.stop() }
            let directory = bed.directory(ipAddressInDNS: true)
            let failure: [String: Any] = [
                "method": "host_add", "code": 4001, "name": "NotFound", "message": "onetouch.test.: DNS zone not found",
            ]
            #expect(try await bed.hook("fail", failure).status == 200)
            let error = await expectStepError(.permanent) {
                _ = try await directory.preregister(
                    DirectoryHost(fqdn: "web-16.onetouch.test", ipAddress: "10.0.1.16"), proposedPassword: SecretBox.oneTimePassword())
            }
            #expect(error?.message == "FreeIPA host_add failed: NotFound 4001: onetouch.test.: DNS zone not found")
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
