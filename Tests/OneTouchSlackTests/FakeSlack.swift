import Foundation
import OneTouchCore
import Synchronization

@testable import OneTouchSlack

/// Slack's Web API and incoming webhooks in memory, as an `HTTPTransport`: posts, updates, threads,
/// metadata, history and replies, user groups, and faults on demand. For the Swift tests; the
/// Python server in testbed/slack plays the same part over real HTTP for the end-to-end tests.
final class FakeSlack: HTTPTransport, Sendable {
    static let token = "xoxb-test-token-0000"
    static let channel = "C0TESTCHAN1"
    static let webhookURL = "https://hooks.slack.test/services/T000/B000/secretpart"

    struct Message: Sendable, Equatable {
        var channel: String
        var ts: String
        var threadTS: String?
        var text: String
        var blocks: [JSONValue]
        var key: String?
        var updates = 0
    }

    enum Fault: Sendable {
        /// An HTTP status with an optional Retry-After and body.
        case status(Int, retryAfter: String? = nil, body: String = "")
        /// HTTP 200 with `{"ok": false, "error": code}` (a webhook: the status Slack uses, body = code).
        case error(String, status: Int = 200)
        /// The message is posted, then the answer is lost (a timeout).
        case loseAnswer
        /// The message is posted, then the answer never comes (until the caller is cancelled).
        case hangAfterPosting
    }

    struct Request: Sendable {
        var method: String
        var at: ContinuousClock.Instant
    }

    private struct State {
        var messages: [Message] = []
        var webhookMessages: [Message] = []
        var requests: [Request] = []
        var faults: [(method: String, fault: Fault)] = []
        var groups: [String: [String]] = [:]
        var responses: [JSONValue] = []
        var counter = 0
    }

    private let state = Mutex(State())

    var messages: [Message] { state.withLock { $0.messages } }
    var webhookMessages: [Message] { state.withLock { $0.webhookMessages } }
    var requests: [Request] { state.withLock { $0.requests } }
    /// What was posted to response_urls.
    var responses: [JSONValue] { state.withLock { $0.responses } }
    func requests(_ method: String) -> [Request] { requests.filter { $0.method == method } }

    /// The next request to `method` ("chat.postMessage", "chat.update", "webhook", …) meets `fault`.
    func inject(_ fault: Fault, into method: String, times: Int = 1) {
        state.withLock { state in
            for _ in 0..<times { state.faults.append((method, fault)) }
        }
    }

    func setGroup(_ id: String, members: [String]) { state.withLock { $0.groups[id] = members } }

    func parents() -> [Message] { messages.filter { $0.threadTS == nil } }
    func replies(to parent: Message) -> [Message] { messages.filter { $0.threadTS == parent.ts } }

    func send(_ request: HTTPRequestData, timeout: Duration) async throws -> HTTPResponseData {
        let path = request.url.path
        let method: String
        if path.hasPrefix("/services/") {
            method = "webhook"
        } else if path.hasPrefix("/commands/") || path.hasPrefix("/actions/") {
            method = "response_url"
        } else {
            method = request.url.lastPathComponent
        }
        let fault: Fault? = state.withLock { state in
            state.requests.append(Request(method: method, at: .now))
            guard let index = state.faults.firstIndex(where: { $0.method == method }) else { return nil }
            return state.faults.remove(at: index).fault
        }
        switch fault {
        case .status(let status, let retryAfter, let body)?:
            return HTTPResponseData(status: status, headers: retryAfter.map { [("Retry-After", $0)] } ?? [], body: Data(body.utf8))
        case .error(let code, let status)?:
            if method == "webhook" { return HTTPResponseData(status: status, body: Data(code.utf8)) }
            return json(["ok": false, "error": .string(code)])
        default:
            break
        }
        let response = try handle(method, request)
        switch fault {
        case .loseAnswer?:
            throw HTTPTransportError.timedOut
        case .hangAfterPosting?:
            try await Task.sleep(for: .seconds(3600))
            throw HTTPTransportError.timedOut
        default:
            return response
        }
    }

    private func handle(_ method: String, _ request: HTTPRequestData) throws -> HTTPResponseData {
        switch method {
        case "webhook":
            guard request.url.absoluteString == Self.webhookURL else { return HTTPResponseData(status: 404, body: Data("no_service".utf8)) }
            guard let body = JSONValue.parse(request.body), let text = body["text"]?.string else {
                return HTTPResponseData(status: 400, body: Data("invalid_payload".utf8))
            }
            state.withLock { state in
                state.webhookMessages.append(
                    Message(
                        channel: "webhook", ts: nextTS(&state), threadTS: nil, text: text, blocks: body["blocks"]?.array ?? [],
                        key: SlackMessage.key(of: body)))
            }
            return HTTPResponseData(status: 200, body: Data("ok".utf8))
        case "response_url":
            if let body = JSONValue.parse(request.body) { state.withLock { $0.responses.append(body) } }
            return HTTPResponseData(status: 200, body: Data("ok".utf8))
        default:
            break
        }
        guard request.header("Authorization") == "Bearer \(Self.token)" else { return json(["ok": false, "error": "invalid_auth"]) }
        let form = FormEncoding.decode(String(decoding: request.body, as: UTF8.self))
        let body = JSONValue.parse(request.body) ?? .null
        switch method {
        case "chat.postMessage":
            guard let channel = body["channel"]?.string, channel == Self.channel else {
                return json(["ok": false, "error": "channel_not_found"])
            }
            guard let text = body["text"]?.string, !text.isEmpty else { return json(["ok": false, "error": "no_text"]) }
            let message = state.withLock { state in
                let message = Message(
                    channel: channel, ts: nextTS(&state), threadTS: body["thread_ts"]?.string, text: text,
                    blocks: body["blocks"]?.array ?? [], key: SlackMessage.key(of: body))
                state.messages.append(message)
                return message
            }
            return json(["ok": true, "channel": .string(channel), "ts": .string(message.ts)])
        case "chat.update":
            let ts = body["ts"]?.string ?? ""
            let found = state.withLock { state -> Bool in
                guard let index = state.messages.firstIndex(where: { $0.ts == ts && $0.channel == body["channel"]?.string }) else {
                    return false
                }
                state.messages[index].text = body["text"]?.string ?? ""
                state.messages[index].blocks = body["blocks"]?.array ?? []
                state.messages[index].updates += 1
                return true
            }
            return found ? json(["ok": true, "ts": .string(ts)]) : json(["ok": false, "error": "message_not_found"])
        case "conversations.history", "conversations.replies":
            let withMetadata = form["include_all_metadata"] == "true"
            let all = messages.filter { $0.channel == form["channel"] }
            let chosen =
                method == "conversations.history"
                ? all.filter { $0.threadTS == nil }.reversed() : all.filter { $0.ts == form["ts"] || $0.threadTS == form["ts"] }
            if method == "conversations.replies" && !all.contains(where: { $0.ts == form["ts"] }) {
                return json(["ok": false, "error": "thread_not_found"])
            }
            let listed: [JSONValue] = chosen.map { message in
                var fields: [String: JSONValue] = ["ts": .string(message.ts), "text": .string(message.text), "type": "message"]
                if withMetadata, let key = message.key {
                    fields["metadata"] = ["event_type": .string(SlackMessage.metadataEventType), "event_payload": ["key": .string(key)]]
                }
                return .object(fields)
            }
            return json(["ok": true, "messages": .array(listed), "has_more": false])
        case "usergroups.users.list":
            guard let users = state.withLock({ $0.groups[form["usergroup"] ?? ""] }) else {
                return json(["ok": false, "error": "no_such_subteam"])
            }
            return json(["ok": true, "users": .array(users.map { .string($0) })])
        default:
            return json(["ok": false, "error": "unknown_method"])
        }
    }

    private func nextTS(_ state: inout State) -> String {
        state.counter += 1
        return String(format: "%.0f.%06d", Date().timeIntervalSince1970, state.counter)
    }

    private func json(_ value: JSONValue) -> HTTPResponseData {
        HTTPResponseData(status: 200, headers: [("Content-Type", "application/json")], body: value.data)
    }
}
