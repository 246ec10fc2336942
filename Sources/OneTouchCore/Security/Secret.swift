/// A secret value (one-time password, token, key). It never prints itself: `description`,
/// `debugDescription` and string interpolation all show `<redacted>`.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    private let value: String

    public init(_ value: String) { self.value = value }

    /// The plaintext, for the one place that must hand it on (a request body, a process's stdin).
    public func reveal() -> String { value }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
}
