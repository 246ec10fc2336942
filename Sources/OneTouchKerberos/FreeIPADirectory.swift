import Foundation
import OneTouchCore

/// FreeIPA through its JSON-RPC API (`/ipa/session/json`), with a password session.
///
/// onetouch logs in with `login_password`, keeps the `ipa_session` cookie and logs in again once
/// when a call comes back with HTTP 401 (an expired session). Hosts are added with `random: true`:
/// the one-time password in effect is the server's `randompassword`, not the proposed one. A host
/// has enrolled once FreeIPA reports a keytab and no password (`has_keytab && !has_password`).
///
/// Neither the admin password nor a one-time password ever appears in an error or a log line.
public actor FreeIPADirectory: Directory {
    public struct Settings: Sendable, Equatable {
        /// The IPA server's FQDN, as FreeIPA calls itself: used for the URL, TLS and the Referer.
        public var server: String
        public var port: Int
        public var realm: String
        /// FreeIPA's primary DNS domain (`api.env.domain`, usually the realm in lower case), for
        /// `ipa-client-install --domain`; not necessarily the hosts' own domain.
        public var domain: String
        /// The admin principal's user name (`admin`, or a user holding the Host Administrators privilege,
        /// and the DNS Administrators privilege when `ipAddressInDNS` is on).
        public var user: String
        /// The user's password, loaded by the caller from a file.
        public var password: Secret
        /// True when FreeIPA manages the hosts' DNS: `host_add` sends the host's `ip_address` (so FreeIPA
        /// adds the A/PTR records, and says so in `messages` when it could not) or, without one, lets
        /// FreeIPA check that the name resolves; `host_del` removes the records (`updatedns`). False:
        /// hosts are added with `force: true` and DNS is left alone, on add and on delete.
        public var ipAddressInDNS: Bool
        /// The JSON-RPC API version sent with every call (any 2.x is accepted by a 2.x server).
        public var apiVersion: String = "2.251"
        /// The limit for one HTTP exchange.
        public var requestTimeout: Duration = .seconds(30)

        public init(
            server: String, port: Int = 443, realm: String, domain: String, user: String, password: Secret,
            ipAddressInDNS: Bool = false
        ) {
            self.server = server
            self.port = port
            self.realm = realm
            self.domain = domain
            self.user = user
            self.password = password
            self.ipAddressInDNS = ipAddressInDNS
        }

        /// The IPA CA certificate (PEM) the hosts get for `ipa-client-install --ca-cert-file`, so that
        /// they never fetch it over plain HTTP; nil when none is configured.
        public var caCertificate: String?

        /// `https://SERVER[:PORT]`.
        var baseURL: String {
            let host = server.contains(":") ? "[\(server)]" : server
            return port == 443 ? "https://\(host)" : "https://\(host):\(port)"
        }
        /// What FreeIPA's Referer check wants: the string prefix `https://<api.env.host>/ipa`, never with
        /// a port (ipaserver/rpcserver.py:389-392 compares strings, so `https://ipa:8443/ipa` is refused).
        var referer: String {
            "https://\(server.contains(":") ? "[\(server)]" : server)/ipa"
        }
    }

    public nonisolated let settings: Settings
    let transport: any HTTPTransport
    /// `ipa_session=<token>`, exactly as the server set it.
    private var session: String?
    private var pendingLogin: Task<String, any Error>?
    private var nextID = 0

    public init(settings: Settings, transport: any HTTPTransport) {
        self.settings = settings
        self.transport = transport
    }

    nonisolated func principal(_ host: DirectoryHost) -> String { "host/\(host.fqdn)@\(settings.realm)" }

    // MARK: Directory

    public func lookup(_ host: DirectoryHost) async throws -> DirectoryEntry? {
        let result: IPAJSON
        do {
            result = try await call("host_show", [.string(host.fqdn)], [:], passing: [IPAError.notFound])
        } catch let error as IPAError where error.code == IPAError.notFound {
            return nil
        }
        return try Self.entry(result["result"], method: "host_show")
    }

    /// FreeIPA knows enrollment itself (`has_keytab`), so `ownsEntry` changes nothing: an entry with a
    /// keytab is refused either way.
    public func preregister(_ host: DirectoryHost, proposedPassword: Secret, ownsEntry: Bool) async throws -> Preregistration {
        try Self.checkLength(host.fqdn)
        var options: [String: IPAJSON] = ["random": .bool(true)]
        if settings.ipAddressInDNS {
            if let address = host.ipAddress { options["ip_address"] = .string(address) }
        } else {
            options["force"] = .bool(true)
        }
        let duplicate: IPAError
        do {
            let result = try await call(
                "host_add", [.string(host.fqdn)], options, passing: [IPAError.duplicateEntry, IPAError.notFound])
            try checkDNSMessages(result, host: host)
            return Preregistration(oneTimePassword: try Self.randomPassword(result, method: "host_add"), baseline: "password")
        } catch let error as IPAError where error.code == IPAError.duplicateEntry {
            // Created by an earlier attempt whose answer was lost, or by someone else: decide by its state.
            // Or a DNS clash: with ip_address, FreeIPA answers 4002 too when another A/PTR record holds
            // the address (ipaserver/plugins/dns.py:600-614), for a host that does not exist.
            duplicate = error
        } catch let error as IPAError where error.code == IPAError.notFound {
            // dnszone_show during the ip_address validation (dns.py:584-589): the zone is not an IPA
            // zone, or this user may not read DNS (only DNS Administrators may, dns.py:2556-2600).
            guard settings.ipAddressInDNS else { throw stepError(error, method: "host_add") }
            throw StepError.needsHuman(
                "FreeIPA host_add failed: \(error)",
                hint:
                    "FreeIPA cannot see the DNS zone of {host}: give \(settings.user) the DNS Administrators privilege, add the zone to FreeIPA DNS, or turn off ip_address_in_dns, then run `onetouch resume {host}`"
            )
        }
        guard let entry = try await lookup(host) else {
            throw StepError.needsHuman(
                "FreeIPA host_add refused \(host.fqdn), which does not exist: \(duplicate)",
                hint:
                    "another DNS record holds {host}'s address (a stale A or PTR record left by a deleted host): remove it in FreeIPA DNS, then run `onetouch resume {host}`"
            )
        }
        if entry.enrolled {
            throw StepError.enrolledElsewhere(
                host.fqdn, detail: "FreeIPA: it has a keytab, so no one-time password can be issued for it",
                hint: "if that entry is stale, remove it (`ipa host-del \(host.fqdn) --updatedns`) and run `onetouch resume {host}`")
        }
        let result = try await call("host_mod", [.string(host.fqdn)], ["random": .bool(true)])
        return Preregistration(oneTimePassword: try Self.randomPassword(result, method: "host_mod"), baseline: "password")
    }

    public func isEnrolled(_ host: DirectoryHost, baseline: String) async throws -> Bool {
        try await lookup(host)?.enrolled ?? false
    }

    public func remove(_ host: DirectoryHost) async throws {
        do {
            // updatedns only when onetouch manages DNS: it deletes whatever IPA DNS holds for the name. A
            // 13020 message (no records, or none this user may see) is not a failure of the removal.
            let options: [String: IPAJSON] = settings.ipAddressInDNS ? ["updatedns": .bool(true)] : [:]
            _ = try await call("host_del", [.string(host.fqdn)], options, passing: [IPAError.notFound])
        } catch let error as IPAError where error.code == IPAError.notFound {
            // Already gone.
        }
    }

    public nonisolated func enrollmentInfo(for host: DirectoryHost) -> EnrollmentInfo {
        EnrollmentInfo(
            backend: "freeipa", realm: settings.realm, server: settings.server, principal: principal(host), domain: settings.domain,
            caCertificate: settings.caCertificate)
    }

    /// FreeIPA's longest host name: `ipaMaxHostnameLength` (64) in host_add, `MAXHOSTNAMELEN` in
    /// ipa-client-install (ipaserver/plugins/host.py:719-726; ipaclient/install/client.py:2267-2272).
    public static let maxHostNameLength = 64

    static func checkLength(_ fqdn: String) throws {
        guard fqdn.count <= maxHostNameLength else {
            throw StepError.permanent(
                "\(fqdn) has \(fqdn.count) characters; FreeIPA allows at most \(maxHostNameLength)",
                hint: "remove {host} and create it with a shorter name")
        }
    }

    /// What FreeIPA says about the DNS records it was asked to add: FailedToAddHostDNSRecords (13030)
    /// means the host was added without them (ipaserver/plugins/host.py:791-794).
    func checkDNSMessages(_ result: IPAJSON, host: DirectoryHost) throws {
        guard case .array(let messages)? = result["messages"] else { return }
        for message in messages where message["code"]?.number == 13030 {
            throw StepError.needsHuman(
                "FreeIPA added \(host.fqdn) but not its DNS records: \(redact(message["message"]?.string ?? "FailedToAddHostDNSRecords"))",
                hint:
                    "add the A/PTR records of {host} in FreeIPA DNS (or give \(settings.user) the DNS Administrators privilege), then run `onetouch resume {host}`"
            )
        }
    }

    /// A cheap round trip (login if needed, then `ping`); returns the server's summary line.
    public func ping() async throws -> String {
        try await call("ping", [], [:])["summary"]?.string ?? ""
    }

    // MARK: Results

    static func entry(_ result: IPAJSON?, method: String) throws -> DirectoryEntry {
        guard let hasKeytab = result?["has_keytab"]?.bool, let hasPassword = result?["has_password"]?.bool else {
            throw StepError.permanent("FreeIPA \(method) returned no has_keytab/has_password for the host")
        }
        let enrolled = hasKeytab && !hasPassword
        return DirectoryEntry(enrolled: enrolled, keyState: enrolled ? "keytab" : hasPassword ? "password" : "none")
    }

    static func randomPassword(_ result: IPAJSON, method: String) throws -> Secret {
        guard let password = result["result"]?["randompassword"]?.string, !password.isEmpty else {
            throw StepError.permanent("FreeIPA \(method) did not return the generated one-time password (randompassword)")
        }
        return Secret(password)
    }

    // MARK: JSON-RPC

    /// Runs one command and returns the envelope's `result`. Command errors throw ``IPAError`` for the
    /// codes in `passing` (the ones the caller handles) and ``StepError`` for everything else.
    func call(
        _ method: String, _ arguments: [IPAJSON], _ options: [String: IPAJSON], passing: Set<Int> = []
    ) async throws -> IPAJSON {
        var options = options
        options["version"] = .string(settings.apiVersion)
        nextID += 1
        let envelope: IPAJSON = .object([
            "method": .string(method), "params": .array([.array(arguments), .object(options)]), "id": .number(Double(nextID)),
        ])
        let body = try JSONEncoder().encode(envelope)

        var cookie = try await currentSession(replacing: nil)
        var response = try await send(jsonCall: body, cookie: cookie, method: method)
        if response.status == 401 {
            cookie = try await currentSession(replacing: cookie)
            response = try await send(jsonCall: body, cookie: cookie, method: method)
            if response.status == 401 {
                throw StepError.needsHuman(
                    "FreeIPA \(method) was refused (HTTP 401) right after a successful login of '\(settings.user)'",
                    hint: "check that \(settings.user) may use the JSON-RPC API on \(settings.server), then run `onetouch resume {host}`")
            }
        }
        try checkStatus(response, what: "FreeIPA \(method)")
        guard let decoded = try? JSONDecoder().decode(IPAJSON.self, from: response.body), decoded.object != nil else {
            // The body is not echoed: a host_add/host_mod answer carries a one-time password.
            throw StepError.permanent(
                "FreeIPA \(method) returned HTTP \(response.status) without a JSON-RPC envelope (Content-Type: \(response.header("Content-Type") ?? "none"))",
                hint: "check that \(settings.baseURL) is the FreeIPA server itself and not a proxy's page")
        }
        if let error = decoded["error"], error != .null {
            let failure = IPAError(
                method: method, code: Int(error["code"]?.number ?? 0), name: error["name"]?.string ?? "error",
                message: redact(error["message"]?.string ?? ""))
            if passing.contains(failure.code) { throw failure }
            throw stepError(failure, method: method)
        }
        return decoded["result"] ?? .null
    }

    private func send(jsonCall body: Data, cookie: String, method: String) async throws -> HTTPResponseData {
        let request = HTTPRequestData(
            method: "POST", url: try url("/ipa/session/json"),
            headers: [
                ("Content-Type", "application/json"), ("Accept", "application/json"), ("Referer", settings.referer),
                ("Cookie", cookie),
            ], body: body)
        let response = try await exchange(request, what: "FreeIPA \(method)")
        // FreeIPA 4.9.14+/4.12 refuses a bad Referer on JSON calls with 400 "denied" before the
        // session (rpcserver.py:916-917); 401 (no session) comes from Apache first.
        if response.status == 400, Self.htmlDetail(response.body) == "denied" {
            throw StepError.needsHuman(
                "FreeIPA \(method) rejected the request's Referer \(settings.referer) (HTTP 400: denied)", hint: refererHint)
        }
        return response
    }

    func stepError(_ error: IPAError, method: String) -> StepError {
        let what = "FreeIPA \(method) failed: \(error)"
        switch error.code {
        case 911:
            return .needsHuman("FreeIPA \(method) rejected the request's Referer \(settings.referer): \(error)", hint: refererHint)
        case 4019:
            return .permanent(
                what,
                hint: settings.ipAddressInDNS
                    ? "FreeIPA checks that {host} resolves when no IP address is known: add a DNS A/AAAA record, or turn off ip_address_in_dns so hosts are added with force"
                    : "add a DNS A/AAAA record for {host}, or turn off ip_address_in_dns so hosts are added with force")
        case 1000..<3000:  // authentication and authorization (ACIError 2100)
            let dns = settings.ipAddressInDNS ? " and the DNS Administrators privilege (ip_address_in_dns is on)" : ""
            return .needsHuman(
                what,
                hint:
                    "give \(settings.user) the Host Administrators privilege (add, modify and delete hosts)\(dns) on \(settings.server), then run `onetouch resume {host}`"
            )
        // Internal, network, database and limit errors, and DNSResolverError from
        // verify_host_resolvable (ipalib/errors.py; ipalib/util.py:110-116).
        case 903, 904, 907, 908, 4203, 4204, 4211, 4213, 4214, 4215, 4216, 4401:
            return .transient(what)
        default:
            return .permanent(what)
        }
    }

    nonisolated var refererHint: String {
        "set the directory server to the exact name FreeIPA calls itself (its FQDN in lower case, as in its certificate; the Referer \(settings.referer) must start with https://<that name>/ipa), make a proxy in between pass the Referer header on, then run `onetouch resume {host}`"
    }

    // MARK: Session

    /// The session cookie; logs in when there is none, or when the caller's `stale` cookie is still the
    /// current one. Concurrent callers share one login.
    private func currentSession(replacing stale: String?) async throws -> String {
        if let session, session != stale { return session }
        if let pendingLogin { return try await pendingLogin.value }
        let login = Task { try await self.login() }
        pendingLogin = login
        defer { pendingLogin = nil }
        let cookie = try await login.value
        session = cookie
        return cookie
    }

    /// `POST /ipa/session/login_password`; returns `ipa_session=<token>`.
    nonisolated func login() async throws -> String {
        let form = "user=" + Self.formEncode(settings.user) + "&password=" + Self.formEncode(settings.password.reveal())
        let request = HTTPRequestData(
            method: "POST", url: try url("/ipa/session/login_password"),
            headers: [
                ("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "text/plain"), ("Referer", settings.referer),
            ], body: Data(form.utf8))
        let response = try await exchange(request, what: "FreeIPA login")
        switch response.status {
        case 200:
            let cookies = response.headers.filter { $0.0.caseInsensitiveCompare("Set-Cookie") == .orderedSame }.map(\.1)
            guard let cookie = Self.sessionCookie(cookies) else {
                throw StepError.permanent("FreeIPA accepted the login of '\(settings.user)' but set no ipa_session cookie")
            }
            return cookie
        case 401:
            // FreeIPA 4.9-4.12 reports a locked user as invalid-password (rpcserver.py:1151).
            let reason = redact(response.header("X-IPA-Rejection-Reason") ?? "not given")
            throw StepError.needsHuman(
                "FreeIPA refused the login of '\(settings.user)' at \(settings.server) (HTTP 401, X-IPA-Rejection-Reason: \(reason))",
                hint: Self.loginHint(reason: reason, user: settings.user))
        case 400:
            // FreeIPA 4.9.14+/4.12 refuses a bad Referer with 400 "denied" (rpcserver.py:1043-1044).
            let detail = redact(Self.htmlDetail(response.body))
            if detail == "denied" || detail.localizedCaseInsensitiveContains("referer") {
                throw StepError.needsHuman(
                    "FreeIPA rejected the login's Referer \(settings.referer) (HTTP 400: \(detail))", hint: refererHint)
            }
            throw StepError.permanent("FreeIPA rejected the login request (HTTP 400: \(detail))")
        default:
            try checkStatus(response, what: "FreeIPA login")
            throw StepError.permanent("FreeIPA login answered HTTP \(response.status)")
        }
    }

    static func loginHint(reason: String, user: String) -> String {
        switch reason {
        case "password-expired":
            "the password of \(user) expired: set a new one in FreeIPA and in the password file, then run `onetouch resume {host}`"
        case "user-locked":
            "\(user) is locked in FreeIPA: unlock it (`ipa user-unlock \(user)`), then run `onetouch resume {host}`"
        case "krbprincipal-expired":
            "the principal of \(user) expired in FreeIPA: extend it, then run `onetouch resume {host}`"
        default:
            "check the directory user and its password file, and whether \(user) is locked (`ipa user-status \(user)`; FreeIPA 4.9-4.12 reports a locked account as a wrong password), then run `onetouch resume {host}`"
        }
    }

    /// `ipa_session=<token>` from the Set-Cookie values, the token unchanged (it is URL-encoded already).
    static func sessionCookie(_ setCookies: [String]) -> String? {
        for value in setCookies {
            for candidate in value.split(separator: ",", omittingEmptySubsequences: true) {
                let pair = candidate.split(separator: ";", maxSplits: 1).first.map(String.init) ?? ""
                let trimmed = pair.trimmingCharacters(in: .whitespaces)
                if trimmed.hasPrefix("ipa_session="), trimmed.count > "ipa_session=".count { return trimmed }
            }
        }
        return nil
    }

    // MARK: HTTP

    private nonisolated func url(_ path: String) throws -> URL {
        guard let url = URL(string: settings.baseURL + path) else {
            throw StepError.permanent("'\(settings.server)' is not a usable FreeIPA server name")
        }
        return url
    }

    /// One exchange; failures below HTTP are transient, except certificate and name mismatches, which
    /// no retry cures (a wrong `server`, or a `ca_bundle` that is not the IPA CA).
    private nonisolated func exchange(_ request: HTTPRequestData, what: String) async throws -> HTTPResponseData {
        do {
            return try await transport.send(request, timeout: settings.requestTimeout)
        } catch let error as HTTPTransportError {
            if case .connectionFailed(let reason) = error, Self.isCertificateFailure(reason) {
                throw StepError.needsHuman(
                    "\(what): TLS to \(settings.baseURL) failed: \(reason)",
                    hint:
                        "the directory server must be the FreeIPA server's FQDN as in its certificate, and ca_bundle the IPA CA (/etc/ipa/ca.crt on the server); fix the configuration, then run `onetouch resume {host}`"
                )
            }
            throw StepError.transient("\(what): cannot reach \(settings.baseURL): \(error)")
        }
    }

    /// A TLS failure that is about the certificate (untrusted issuer, name mismatch, expired).
    static func isCertificateFailure(_ reason: String) -> Bool {
        let text = reason.lowercased()
        return ["certificate", "validatehostname", "verify_failed", "hostname"].contains { text.contains($0) }
    }

    /// Throws for statuses other than 200 (401 is handled by the callers before).
    private nonisolated func checkStatus(_ response: HTTPResponseData, what: String) throws {
        switch response.status {
        case 200: return
        case 429, 500...599:
            let retryAfter = response.header("Retry-After").flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            // FreeIPA's 503 page names its cause (a database error while setting up the session,
            // rpcserver.py:931-940); Apache's 500 is one line.
            let detail = redact(Self.htmlDetail(response.body))
            throw StepError.transient(
                "\(what): HTTP \(response.status) from \(settings.server)\(detail.isEmpty ? "" : ": \(detail)")",
                retryAfter: retryAfter.map { .seconds($0) })
        default:
            throw StepError.permanent("\(what): unexpected HTTP \(response.status) from \(settings.server)")
        }
    }

    /// Server text may quote what it was sent: take the admin password out of it.
    private nonisolated func redact(_ text: String) -> String {
        let password = settings.password.reveal()
        guard !password.isEmpty else { return text }
        return text.replacingOccurrences(of: password, with: "<redacted>")
    }

    /// `application/x-www-form-urlencoded` value: everything but unreserved characters percent-encoded.
    static func formEncode(_ value: String) -> String {
        var allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }

    /// The `<strong>` text of an Apache/FreeIPA error page, or its start.
    static func htmlDetail(_ body: Data) -> String {
        let text = String(decoding: body, as: UTF8.self)
        var detail = text
        if let start = text.range(of: "<strong>"), let end = text.range(of: "</strong>", range: start.upperBound..<text.endIndex) {
            detail = String(text[start.upperBound..<end.lowerBound])
        }
        for (entity, character) in [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#x27;", "'"), ("&#39;", "'"), ("&amp;", "&")] {
            detail = detail.replacingOccurrences(of: entity, with: character)
        }
        detail = detail.trimmingCharacters(in: .whitespacesAndNewlines)
        return detail.count > 300 ? String(detail.prefix(300)) + "…" : detail
    }
}

/// A FreeIPA command error from the JSON-RPC envelope (`error`: code, name, message) that callers
/// may handle (not found, duplicate). Unhandled, it is a permanent failure.
struct IPAError: ClassifiedError, Sendable, CustomStringConvertible {
    static let notFound = 4001
    static let duplicateEntry = 4002

    var method: String
    var code: Int
    var name: String
    var message: String

    var description: String { "\(name) \(code): \(message)" }
    var stepError: StepError { .permanent("FreeIPA \(method) failed: \(self)") }
}

/// Just enough JSON for JSON-RPC envelopes.
enum IPAJSON: Sendable, Equatable, Codable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([IPAJSON])
    case object([String: IPAJSON])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([IPAJSON].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: IPAJSON].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value):
            if value == value.rounded(), abs(value) < 1e15 { try container.encode(Int64(value)) } else { try container.encode(value) }
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    subscript(key: String) -> IPAJSON? {
        if case .object(let object) = self { object[key] } else { nil }
    }

    var object: [String: IPAJSON]? {
        if case .object(let object) = self { object } else { nil }
    }
    var bool: Bool? {
        if case .bool(let value) = self { value } else { nil }
    }
    var number: Double? {
        if case .number(let value) = self { value } else { nil }
    }
    /// A string, or the only element of a one-string list (LDAP attributes come as lists).
    var string: String? {
        switch self {
        case .string(let value): value
        case .array(let values) where values.count == 1: values[0].string
        default: nil
        }
    }
}
