/// A host as the Kerberos directory knows it.
public struct DirectoryHost: Sendable, Equatable {
    public var fqdn: String
    public var ipAddress: String?
    public init(fqdn: String, ipAddress: String? = nil) {
        self.fqdn = fqdn
        self.ipAddress = ipAddress
    }
}

/// What the directory says about a host entry.
public struct DirectoryEntry: Sendable, Equatable {
    public var enrolled: Bool
    /// A backend-specific marker of the key state (MIT: the key version; IPA: "keytab"/"password").
    public var keyState: String
    public init(enrolled: Bool, keyState: String) {
        self.enrolled = enrolled
        self.keyState = keyState
    }
}

/// The result of a pre-registration: the one-time password now in effect and the key state
/// enrollment must move away from.
public struct Preregistration: Sendable, Equatable {
    public var oneTimePassword: Secret
    public var baseline: String
    public init(oneTimePassword: Secret, baseline: String) {
        self.oneTimePassword = oneTimePassword
        self.baseline = baseline
    }
}

/// What a host needs to enroll itself (served once with its one-time password). Addresses are as
/// the host reaches them, which may differ from how `serve` does (a local VM dials a relay).
public struct EnrollmentInfo: Sendable, Equatable, Codable {
    public var backend: String
    public var realm: String
    public var server: String
    public var principal: String
    /// The DNS domain the host joins (FreeIPA's `--domain`; the MIT `[domain_realm]` mapping).
    public var domain: String?
    /// The KDC and the admin server as HOST:PORT, for the host's krb5.conf (MIT).
    public var kdc: String?
    public var adminServer: String?
    /// The directory's CA certificate (PEM) for the host (FreeIPA's `--ca-cert-file`), so that the host
    /// never fetches it over plain HTTP.
    public var caCertificate: String?
    public init(
        backend: String, realm: String, server: String, principal: String, domain: String? = nil, kdc: String? = nil,
        adminServer: String? = nil, caCertificate: String? = nil
    ) {
        self.backend = backend
        self.realm = realm
        self.server = server
        self.principal = principal
        self.domain = domain
        self.kdc = kdc
        self.adminServer = adminServer
        self.caCertificate = caCertificate
    }
}

extension Directory {
    /// Pre-registers a host whose entry, if there is one, is not known to be its own.
    public func preregister(_ host: DirectoryHost, proposedPassword: Secret) async throws -> Preregistration {
        try await preregister(host, proposedPassword: proposedPassword, ownsEntry: false)
    }
}

extension StepError {
    /// The directory has an entry for this name that some machine enrolled with.
    public static func enrolledElsewhere(_ fqdn: String, detail: String, hint: String) -> StepError {
        .permanent("the directory already has \(fqdn) enrolled by another machine (\(detail))", hint: hint)
    }
}

/// A Kerberos directory (FreeIPA, MIT). "Already gone" on removal is success.
public protocol Directory: Sendable {
    /// The entry for `host`, or nil when there is none.
    func lookup(_ host: DirectoryHost) async throws -> DirectoryEntry?
    /// Creates the entry with `proposedPassword` as its one-time password, or re-issues the one-time
    /// password of an existing, unenrolled entry. Returns the password now in effect (a backend may
    /// generate its own). An existing entry that a machine enrolled with is refused
    /// (`StepError.enrolledElsewhere`) unless `ownsEntry`: an earlier attempt of this host made it, and
    /// its key may have moved without any machine enrolling (MIT's key version moves with each
    /// password set).
    func preregister(_ host: DirectoryHost, proposedPassword: Secret, ownsEntry: Bool) async throws -> Preregistration
    /// True once the host enrolled (its key moved away from `baseline`).
    func isEnrolled(_ host: DirectoryHost, baseline: String) async throws -> Bool
    /// Removes (or disables) the entry. Absent is success.
    func remove(_ host: DirectoryHost) async throws
    /// What the host needs to enroll.
    func enrollmentInfo(for host: DirectoryHost) -> EnrollmentInfo
}
