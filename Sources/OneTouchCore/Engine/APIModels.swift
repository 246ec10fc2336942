import Foundation

/// A host as the admin API shows it (stable JSON for `--json`).
public struct HostView: Sendable, Codable, Equatable {
    public var id: String
    public var name: String
    public var fqdn: String
    public var role: String
    public var state: String
    public var step: String?
    public var reason: String?
    public var generation: Int
    public var instanceId: String?
    public var privateIp: String?
    public var volumeId: String?
    public var createdAt: Date
    public var updatedAt: Date
    /// The log tail the host sent with its `failed` report, when that is why the host failed (only in
    /// the one-host view).
    public var failureLog: String?
    /// A ready host's configuration drift (nil: not ready, or no run reported yet).
    public var drift: DriftState?

    public init(_ host: HostRecord, failureLog: String? = nil, drift: DriftState? = nil) {
        self.drift = drift
        let spec = try? host.decodedSpec
        let facts = host.decodedFacts
        id = host.id
        name = host.name
        fqdn = spec?.fqdn ?? host.name
        role = host.role
        state = host.state.rawValue
        step = host.step?.rawValue
        reason = host.reason
        generation = host.generation
        instanceId = facts.instanceID
        privateIp = facts.privateIP
        volumeId = facts.volumeID
        createdAt = host.createdAt
        updatedAt = host.updatedAt
        self.failureLog = failureLog
    }
}

/// One event as the admin API shows it.
public struct EventView: Sendable, Codable, Equatable {
    public var id: Int64
    public var at: Date
    public var from: String?
    public var to: String
    public var step: String?
    public var reason: String
    public var actor: String

    public init(_ event: EventRecord) {
        id = event.id ?? 0
        at = event.at
        from = event.fromState
        to = event.toState
        step = event.step?.rawValue
        reason = event.reason
        actor = event.actor
    }
}

/// `POST /v1/admin/check`: which hosts run their next pull in check mode.
public struct CheckRequest: Sendable, Codable, Equatable {
    public var names: [String]
    public var role: String?
    public var all: Bool
    public init(names: [String] = [], role: String? = nil, all: Bool = false) {
        self.names = names
        self.role = role
        self.all = all
    }
}

public struct CheckAnswer: Sendable, Codable, Equatable {
    public var hosts: [String]
    public init(hosts: [String]) { self.hosts = hosts }
}

public struct RetryRequest: Sendable, Codable, Equatable {
    public var from: Step
    public init(from: Step) { self.from = from }
}

public struct DestroyRequest: Sendable, Codable, Equatable {
    public var keepVolume: Bool
    public init(keepVolume: Bool) { self.keepVolume = keepVolume }
}

/// The body of every error response.
public struct ErrorBody: Sendable, Codable, Equatable {
    public var error: String
    public init(error: String) { self.error = error }
}

/// The one-time password response of the host API: what the host needs to enroll, as it reaches it.
public struct EnrollmentBody: Sendable, Codable, Equatable {
    public var backend: String
    public var realm: String
    public var server: String
    public var principal: String
    public var domain: String?
    public var kdc: String?
    public var adminServer: String?
    public var caCertificate: String?
    public var oneTimePassword: String

    public init(_ info: EnrollmentInfo, oneTimePassword: String) {
        self.backend = info.backend
        self.realm = info.realm
        self.server = info.server
        self.principal = info.principal
        self.domain = info.domain
        self.kdc = info.kdc
        self.adminServer = info.adminServer
        self.caCertificate = info.caCertificate
        self.oneTimePassword = oneTimePassword
    }
}

/// `GET /v1/hosts/{id}/volume`: the data volume, and the device name the cloud attached it as when it
/// has one (absent from the JSON otherwise).
public struct VolumeBody: Sendable, Codable, Equatable {
    public var volumeId: String
    public var device: String?
    public init(volumeId: String, device: String?) {
        self.volumeId = volumeId
        self.device = device
    }
}

/// What the orchestrator waits for from the host now (`GET /v1/hosts/{id}/task`). A host whose own
/// stage failed polls this and runs again when a new attempt appears (after `onetouch retry` or
/// `resume`), so a retried step reaches the host without any inbound connection to it.
public struct HostTask: Sendable, Codable, Equatable {
    /// `bootstrap` or `config-pull` (run the bootstrap again), `none` (nothing to do now) or `done`.
    public var step: String
    /// Opaque; changes with every retry or resume.
    public var attempt: String
    public init(step: String, attempt: String) {
        self.step = step
        self.attempt = attempt
    }
}

/// The host API's answer to a report.
public struct ReportAnswer: Sendable, Codable, Equatable {
    public var recorded: Bool
    /// The attempt the report belongs to (as `GET /task` names it).
    public var attempt: String
    public init(recorded: Bool, attempt: String) {
        self.recorded = recorded
        self.attempt = attempt
    }
}

/// A credential for a private configuration repository (`GET /v1/hosts/{id}/config-credential`).
public struct RepositoryCredentialBody: Sendable, Codable, Equatable {
    public var kind: String
    public var secret: String
    public init(kind: String, secret: String) {
        self.kind = kind
        self.secret = secret
    }
}

/// Dates in the API: ISO 8601 in UTC with milliseconds (`2026-11-27T17:00:48.123Z`), so that
/// `create --wait` and `events` show how long each step took, not a rounding to whole seconds.
/// Dates without a fraction are read too.
public enum APIDates {
    static let withMilliseconds = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// `2026-11-27T17:00:48.123Z`.
    public static func format(_ date: Date) -> String { withMilliseconds.format(date) }
    static let wholeSeconds = Date.ISO8601FormatStyle()

    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(withMilliseconds.format(date))
        }
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            if let date = try? withMilliseconds.parse(text) { return date }
            if let date = try? wholeSeconds.parse(text) { return date }
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "\(text) is not an ISO 8601 date such as 2026-11-27T17:00:48.123Z")
        }
        return decoder
    }
}
