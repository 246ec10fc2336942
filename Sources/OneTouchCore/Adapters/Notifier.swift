/// A message for the team about a host.
public struct Announcement: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case ready, destroyed, failed
        /// A host's configuration or cloud resources drifted, or came back (once per transition).
        case drift
    }
    public var kind: Kind
    public var hostName: String
    public var hostID: String
    public var role: String
    /// One line for people, e.g. "web-01 is ready (role web, 10.0.1.23) after 4m12s".
    public var text: String
    /// Stable per announcement, so a resend after a crash can be recognised.
    public var idempotencyKey: String

    public init(kind: Kind, hostName: String, hostID: String, role: String, text: String, idempotencyKey: String) {
        self.kind = kind
        self.hostName = hostName
        self.hostID = hostID
        self.role = role
        self.text = text
        self.idempotencyKey = idempotencyKey
    }
}

/// Tells people about hosts (Slack, a log).
public protocol Notifier: Sendable {
    func announce(_ announcement: Announcement) async throws
}
