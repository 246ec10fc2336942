import Foundation
import OneTouchCore

/// A failed EC2 call: an AWS error response, an HTTP error without a parsable body, a transport
/// failure, or a request rejected before sending. Holds no request data, so it can never leak
/// credentials.
public struct EC2Error: Error, Sendable, Equatable, CustomStringConvertible {
    /// What a caller should do about it.
    public enum Kind: Sendable, Equatable, CaseIterable {
        /// Rate limited: retry with (longer) backoff.
        case throttled
        /// Server-side or network trouble: retry with backoff.
        case transient
        /// The id may simply not be visible yet (eventual consistency): poll before concluding.
        case notFoundMaybeEventual
        /// RunInstances: the client token belongs to an instance that is already terminated.
        case idempotentInstanceTerminated
        /// Same client token, different parameters.
        case idempotencyMismatch
        /// Credentials rejected, expired or not allowed, or this machine's clock is off: the host
        /// pauses and is re-checked, since renewed credentials (or a corrected clock) clear it.
        case authentication
        /// Any other client error: do not retry.
        case invalidRequest

        public var isRetryable: Bool { self == .throttled || self == .transient }
    }

    /// The AWS error code (e.g. `InvalidAMIID.NotFound`); `HTTP<status>` when the body had none;
    /// `RequestTimeout` / `ConnectionError` for transport failures; `MalformedResponse` when a
    /// 2xx body could not be decoded.
    public var code: String
    public var message: String
    /// `nil` when no HTTP response was received (transport failure or client-side validation).
    public var httpStatus: Int?
    public var requestID: String?
    /// The Query API action, when known.
    public var action: String?
    public var kind: Kind
    /// How long the service asked to wait (`Retry-After`, `x-amz-retry-after`), if it said.
    public var retryAfter: Duration?

    public init(
        code: String, message: String, httpStatus: Int?, requestID: String? = nil, action: String? = nil, kind: Kind? = nil,
        retryAfter: Duration? = nil
    ) {
        self.code = code
        self.message = message
        self.httpStatus = httpStatus
        self.requestID = requestID
        self.action = action
        self.kind = kind ?? Self.classify(code: code, httpStatus: httpStatus)
        self.retryAfter = retryAfter
    }

    public var isRetryable: Bool { kind.isRetryable }

    /// `EC2 RunInstances failed: InvalidAMIID.NotFound: The image id '[ami-1]' does not exist (HTTP 400, request ID abc)`.
    public var description: String {
        var text = "EC2 \(action ?? "request") failed: \(code): \(message)"
        var details: [String] = []
        if let httpStatus { details.append("HTTP \(httpStatus)") }
        if let requestID { details.append("request ID \(requestID)") }
        if !details.isEmpty { text += " (" + details.joined(separator: ", ") + ")" }
        if kind == .authentication { text += " - check the AWS credentials, region and IAM permissions" }
        return text
    }

    // MARK: - Classification

    static let throttlingCodes: Set<String> = [
        "RequestLimitExceeded", "EC2ThrottledException", "Throttling", "ThrottlingException", "SlowDown", "RequestThrottled",
        "RequestThrottledException", "ThrottledException", "TooManyRequestsException", "BandwidthLimitExceeded",
    ]
    static let transientCodes: Set<String> = [
        "InternalError", "InternalFailure", "Unavailable", "ServiceUnavailable", "RequestTimeout",
        "RequestTimeoutException", "PriorRequestNotComplete", "InsufficientInstanceCapacity",
        "ConnectionError", "MalformedResponse",
    ]
    static let eventualNotFoundCodes: Set<String> = ["InvalidInstanceID.NotFound", "InvalidVolume.NotFound"]
    /// Codes that say the request's time is off (AWS SDKs correct their clock on these).
    /// EC2 answers `RequestExpired` for a time stamp more than 15 minutes off, and `AuthFailure` for
    /// a skewed clock too (aws/aws-sdk-java#519); the others come from other AWS services.
    static let definiteClockSkewCodes: Set<String> = ["RequestExpired", "RequestTimeTooSkewed", "RequestInTheFuture"]
    static let probableClockSkewCodes: Set<String> = ["AuthFailure", "SignatureDoesNotMatch", "InvalidSignatureException"]
    /// Codes that say the credentials are expired, unknown or do not sign right: re-reading them may help.
    /// EC2 answers `RequestExpired` for expired temporary credentials and `AuthFailure` for unknown or
    /// wrong keys; STS-style services say `ExpiredToken`, `InvalidClientTokenId` or `UnrecognizedClientException`.
    static let rejectedCredentialsCodes: Set<String> = definiteClockSkewCodes.union(probableClockSkewCodes).union([
        "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException", "IncompleteSignature",
        "MissingAuthenticationToken",
    ])
    static let authenticationCodes: Set<String> = rejectedCredentialsCodes.union(["UnauthorizedOperation", "CredentialsUnavailable"])

    /// The answer may come from a clock that differs from ours (AWS SDKs then sign with the server's time).
    public var mayBeClockSkew: Bool {
        Self.definiteClockSkewCodes.contains(code) || Self.probableClockSkewCodes.contains(code)
    }

    /// The credentials were refused as expired or unknown: fresh ones may work.
    public var credentialsRejected: Bool { Self.rejectedCredentialsCodes.contains(code) }

    /// Code first (so a 503 `RequestLimitExceeded` is `.throttled`), then the HTTP status.
    public static func classify(code: String, httpStatus: Int?) -> Kind {
        if throttlingCodes.contains(code) { return .throttled }
        if transientCodes.contains(code) { return .transient }
        if eventualNotFoundCodes.contains(code) { return .notFoundMaybeEventual }
        if code == "IdempotentInstanceTerminated" { return .idempotentInstanceTerminated }
        if code == "IdempotentParameterMismatch" { return .idempotencyMismatch }
        if authenticationCodes.contains(code) { return .authentication }
        guard let httpStatus else { return .invalidRequest }
        switch httpStatus {
        case 500...: return .transient
        case 401, 403: return .authentication
        case 429: return .throttled
        default: return .invalidRequest
        }
    }

    // MARK: - Constructors for non-AWS failures

    /// A transport failure (timeout, refused connection, …): always `.transient`.
    static func transport(_ error: any Error, action: String) -> EC2Error {
        if let transportError = error as? HTTPTransportError, transportError == .timedOut {
            return EC2Error(code: "RequestTimeout", message: transportError.description, httpStatus: nil, action: action, kind: .transient)
        }
        return EC2Error(code: "ConnectionError", message: String(describing: error), httpStatus: nil, action: action, kind: .transient)
    }

    /// A request refused by client-side validation before anything was sent.
    static func validation(_ message: String, action: String, code: String = "InvalidParameterValue") -> EC2Error {
        EC2Error(code: code, message: "\(message) (client-side check)", httpStatus: nil, action: action, kind: .invalidRequest)
    }
}
