import Foundation

/// A fully formed HTTP request, as handed to an ``HTTPTransport``.
public struct HTTPRequestData: Sendable {
    public var method: String
    public var url: URL
    /// Header fields in send order. Names are case-insensitive; duplicates are allowed.
    public var headers: [(String, String)]
    public var body: Data

    public init(method: String, url: URL, headers: [(String, String)] = [], body: Data = Data()) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }

    /// The first value of the header `name` (case-insensitive), if present.
    public func header(_ name: String) -> String? {
        headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
    }
}

/// A complete HTTP response (status, headers and the whole body).
public struct HTTPResponseData: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: Data

    public init(status: Int, headers: [(String, String)] = [], body: Data = Data()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first value of the header `name` (case-insensitive), if present.
    public func header(_ name: String) -> String? {
        headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
    }
}

/// The only way this module talks to the network. The orchestrator plugs in an
/// AsyncHTTPClient-based implementation; tests plug in fakes.
///
/// Implementations should throw ``HTTPTransportError`` for timeouts and connection failures so
/// that callers can classify them as transient. Any HTTP status (including 4xx/5xx) is a
/// *response*, not an error.
public protocol HTTPTransport: Sendable {
    func send(_ request: HTTPRequestData, timeout: Duration) async throws -> HTTPResponseData
}

/// Failures below HTTP: nothing (or nothing complete) came back.
public enum HTTPTransportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No complete response within the allowed time.
    case timedOut
    /// The connection could not be established or broke; the associated text is for humans.
    case connectionFailed(String)

    public var description: String {
        switch self {
        case .timedOut: "the request timed out"
        case .connectionFailed(let reason): "connection failed: \(reason)"
        }
    }
}
