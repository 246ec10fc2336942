import Foundation
import OneTouchCore

/// What a request to Slack came to, classified for delivery.
public enum SlackOutcome: Sendable, Equatable {
    /// Done; the Web API's answer (`.null` for a webhook, whose answer is the text `ok`).
    case ok(JSONValue)
    /// HTTP 429: no request before `retryAfter` has passed.
    case rateLimited(retryAfter: Duration)
    /// Slack is down, overloaded or unreachable: back off and try again. `mayHaveSent` says whether the
    /// message may have been posted all the same (a timeout, a 5xx of the Web API).
    case unavailable(String, mayHaveSent: Bool)
    /// An error no retry cures.
    case refused(SlackProblem)
}

/// Slack's Web API (bot token) and incoming webhooks over an `HTTPTransport`. Never puts the token
/// or the webhook URL in an error, a log line or an outcome.
public struct SlackClient: Sendable {
    let transport: any HTTPTransport
    let apiURL: URL
    let token: Secret?
    let timeout: Duration

    public init(transport: any HTTPTransport, apiURL: URL, token: Secret?, timeout: Duration = .seconds(10)) {
        self.transport = transport
        self.apiURL = apiURL
        self.token = token
        self.timeout = timeout
    }

    /// A write method (`chat.postMessage`, `chat.update`) with a JSON body.
    public func call(_ method: String, json body: JSONValue) async -> SlackOutcome {
        await send(
            method: method,
            request: HTTPRequestData(
                method: "POST", url: apiURL.appendingPathComponent(method),
                headers: authorization + [("Content-Type", "application/json; charset=utf-8")], body: body.data))
    }

    /// A read method (`conversations.history`, `conversations.replies`, `usergroups.users.list`) with
    /// form arguments, as Slack's read methods take them.
    public func call(_ method: String, form arguments: [(String, String)]) async -> SlackOutcome {
        await send(
            method: method,
            request: HTTPRequestData(
                method: "POST", url: apiURL.appendingPathComponent(method),
                headers: authorization + [("Content-Type", "application/x-www-form-urlencoded")],
                body: Data(FormEncoding.encode(arguments).utf8)))
    }

    /// Posts to an incoming webhook (or a slash command's `response_url`, which answers the same way).
    public func webhook(_ url: Secret, _ body: JSONValue) async -> SlackOutcome {
        guard let target = URL(string: url.reveal()) else {
            return .refused(SlackProblem(code: "invalid_url", scope: .integration, fix: "notifier.webhook_url is not a URL"))
        }
        let request = HTTPRequestData(
            method: "POST", url: target, headers: [("Content-Type", "application/json; charset=utf-8")], body: body.data)
        let response: HTTPResponseData
        do { response = try await transport.send(request, timeout: timeout) } catch {
            return Self.transportFailure(error, webhook: true, redacting: [url.reveal(), target.path])
        }
        let answer = String(decoding: response.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        switch response.status {
        case 200..<300: return .ok(.null)
        case 429: return .rateLimited(retryAfter: Self.retryAfter(response))
        case 500...: return .unavailable("Slack answered HTTP \(response.status)", mayHaveSent: false)
        default:
            let code = Self.isCode(answer) ? answer : "http_\(response.status)"
            guard let problem = SlackProblem.classify(code, webhook: true) else {
                return .unavailable("Slack answered \(code)", mayHaveSent: false)
            }
            return .refused(problem)
        }
    }

    private var authorization: [(String, String)] {
        token.map { [("Authorization", "Bearer \($0.reveal())")] } ?? []
    }

    private func send(method: String, request: HTTPRequestData) async -> SlackOutcome {
        let response: HTTPResponseData
        do { response = try await transport.send(request, timeout: timeout) } catch {
            return Self.transportFailure(error, webhook: false, redacting: token.map { [$0.reveal()] } ?? [])
        }
        if response.status == 429 { return .rateLimited(retryAfter: Self.retryAfter(response)) }
        guard response.status == 200 else {
            return .unavailable("Slack answered HTTP \(response.status) to \(method)", mayHaveSent: response.status >= 500)
        }
        guard let answer = JSONValue.parse(response.body), let ok = answer["ok"]?.bool else {
            return .unavailable("Slack's answer to \(method) is not the JSON it documents", mayHaveSent: true)
        }
        if ok { return .ok(answer) }
        let code = answer["error"]?.string ?? "unknown_error"
        guard let problem = SlackProblem.classify(code, webhook: false) else {
            if code == "rate_limited" || code == "ratelimited" { return .rateLimited(retryAfter: Self.retryAfter(response)) }
            return .unavailable("Slack answered \(code) to \(method)", mayHaveSent: false)
        }
        return .refused(problem)
    }

    /// `Retry-After` in seconds; 5 s when it is missing or unreadable, at most 15 minutes.
    static func retryAfter(_ response: HTTPResponseData) -> Duration {
        guard let text = response.header("Retry-After"), let seconds = Double(text.trimmingCharacters(in: .whitespaces)),
            seconds >= 0
        else { return .seconds(5) }
        return .milliseconds(Int64(min(seconds, 900) * 1000))
    }

    static func isCode(_ text: String) -> Bool {
        !text.isEmpty && text.count <= 64 && text.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" }
    }

    /// A timeout may have delivered the message; a failed connection to a webhook did not (webhook
    /// mode has no way to look); to the Web API it may have (the lookup decides).
    static func transportFailure(_ error: any Error, webhook: Bool, redacting secrets: [String]) -> SlackOutcome {
        var text = (error as? HTTPTransportError)?.description ?? "the request failed"
        // A webhook's path is its secret: the transport's text may name it without the scheme.
        for secret in secrets where secret.count > 1 { text = text.replacingOccurrences(of: secret, with: "<redacted>") }
        let timedOut = (error as? HTTPTransportError) == .timedOut
        return .unavailable("Slack could not be reached (\(text))", mayHaveSent: timedOut || !webhook)
    }
}

/// `application/x-www-form-urlencoded`, both ways.
public enum FormEncoding {
    static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    public static func encode(_ fields: [(String, String)]) -> String {
        fields.map { "\(escape($0.0))=\(escape($0.1))" }.joined(separator: "&")
    }

    static func escape(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? "" }

    /// The fields of a form body; the last of repeated names wins.
    public static func decode(_ body: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in body.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = unescape(String(parts[0]))
            fields[name] = parts.count > 1 ? unescape(String(parts[1])) : ""
        }
        return fields
    }

    static func unescape(_ text: String) -> String {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? text
    }
}
