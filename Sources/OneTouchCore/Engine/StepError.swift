/// Whether a retry can help. An error that does not say is permanent.
public enum ErrorClass: String, Sendable, Codable {
    /// Throttling, 5xx, timeouts, connection resets: retried with backoff inside the step's budget.
    case transient
    /// Validation, 4xx, authorization: the host fails with a reason and zero retries.
    case permanent
    /// Something a person must fix first (expired credentials, say): the host pauses.
    case needsHuman = "needs-human"
}

/// The error type steps and adapters throw to say what went wrong and whether a retry can help.
public struct StepError: Error, Sendable, CustomStringConvertible {
    public var errorClass: ErrorClass
    /// What happened, for people. Never contains a secret.
    public var message: String
    /// What to do next, for people; `{host}` stands for the host's name (adapters do not know it).
    public var hint: String?
    /// For transient errors: wait at least this long before the next attempt (Retry-After). For
    /// needs-human errors: look again after this long (the cause may clear by itself).
    public var retryAfter: Duration?
    /// A transient error that only asks to slow down (EC2 `RequestLimitExceeded`, HTTP 429): the step
    /// waits and runs again without spending an attempt or its time budget. A busy account must not
    /// fail hosts.
    public var throttled: Bool

    public init(
        _ errorClass: ErrorClass, _ message: String, hint: String? = nil, retryAfter: Duration? = nil, throttled: Bool = false
    ) {
        self.errorClass = errorClass
        self.message = message
        self.hint = hint
        self.retryAfter = retryAfter
        self.throttled = throttled && errorClass == .transient
    }

    public static func transient(_ message: String, retryAfter: Duration? = nil) -> StepError {
        StepError(.transient, message, retryAfter: retryAfter)
    }
    /// The service asks to slow down: wait (at least `retryAfter`, if it said) and try again, without
    /// spending an attempt.
    public static func throttled(_ message: String, retryAfter: Duration? = nil) -> StepError {
        StepError(.transient, message, retryAfter: retryAfter, throttled: true)
    }
    public static func permanent(_ message: String, hint: String? = nil) -> StepError {
        StepError(.permanent, message, hint: hint)
    }
    public static func needsHuman(_ message: String, hint: String? = nil) -> StepError {
        StepError(.needsHuman, message, hint: hint)
    }

    /// Needs a person, but may also clear by itself (credentials renewed, access granted): the host
    /// pauses, and the engine tries the step again every `recheckAfter` until it works or someone acts.
    public static func needsHuman(_ message: String, hint: String? = nil, recheckAfter: Duration) -> StepError {
        StepError(.needsHuman, message, hint: hint, retryAfter: recheckAfter)
    }

    public var description: String {
        if let hint { "\(message); \(hint)" } else { message }
    }

    /// Classifies any error: a `StepError` keeps its class, anything else is permanent.
    public static func classify(_ error: any Error) -> StepError {
        if let stepError = error as? StepError { return stepError }
        if let classified = error as? any ClassifiedError { return classified.stepError }
        return .permanent("unexpected error: \(error)")
    }
}

/// Adapters' own error types conform to say how the engine should treat them.
public protocol ClassifiedError: Error {
    var stepError: StepError { get }
}
