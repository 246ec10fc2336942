import Foundation
import Logging
import OneTouchCore
import ServiceLifecycle
import Synchronization
import WSClient

/// Chatops over Socket Mode: onetouch opens a WebSocket to Slack (`apps.connections.open` with the
/// app-level token, a new URL each time), so a team behind a firewall needs no inbound endpoint.
/// Slash commands are answered in their ack (within Slack's 3 seconds); button clicks are acked at
/// once and answered on their `response_url`. A `disconnect` message or a dropped connection opens a
/// new one; failures back off from 1 s to a minute.
public final class SlackSocketMode: Service, Sendable {
    let chatOps: SlackChatOps
    let client: SlackClient
    let logger: Logger

    public init(chatOps: SlackChatOps, appToken: Secret, transport: any HTTPTransport, apiURL: URL, logger: Logger) {
        self.chatOps = chatOps
        self.client = SlackClient(transport: transport, apiURL: apiURL, token: appToken, timeout: .seconds(10))
        self.logger = logger
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown { try await self.loop() }
    }

    func loop() async throws {
        var failures = 0
        while !Task.isCancelled {
            do {
                let url = try await openConnection()
                let ended = try await session(url)
                failures = 0
                logger.info("Slack Socket Mode connection ended; opening a new one", metadata: ["reason": "\(ended)"])
            } catch is CancellationError {
                return
            } catch {
                failures += 1
                let delay = min(60.0, pow(2, Double(min(failures - 1, 10))))
                logger.warning(
                    "Slack Socket Mode: no connection; trying again", metadata: ["error": "\(error)", "retry_in_s": "\(delay)"])
                try await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
            }
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// A fresh WebSocket URL (single use). Its ticket is never logged.
    func openConnection() async throws -> String {
        switch await client.call("apps.connections.open", form: []) {
        case .ok(let answer):
            guard let url = answer["url"]?.string else { throw Failure(description: "apps.connections.open gave no url") }
            return url
        case .rateLimited(let after):
            try await Task.sleep(for: after)
            throw Failure(description: "apps.connections.open is rate limited")
        case .unavailable(let reason, _):
            throw Failure(description: reason)
        case .refused(let problem):
            throw Failure(description: "\(problem.code): check notifier.chatops.app_token (xapp-…, scope connections:write)")
        }
    }

    /// Serves one connection until Slack asks to reconnect or it closes; returns why it ended.
    func session(_ url: String) async throws -> String {
        let ended = EndReason()
        try await WebSocketClient.connect(url: url, logger: logger) { inbound, outbound, _ in
            for try await message in inbound.messages(maxSize: 1 << 20) {
                guard case .text(let text) = message else { continue }
                switch await self.handle(text) {
                case .ack(let ack):
                    try await outbound.write(.text(ack))
                case .ackThen(let ack, let work):
                    try await outbound.write(.text(ack))
                    Task { await work() }
                case .reconnect(let reason):
                    ended.set(reason)
                    try await outbound.close(.normalClosure, reason: nil)
                    return
                case .ignore:
                    break
                }
            }
        }
        return ended.value
    }

    /// What to do with one message from Slack.
    enum Reaction: Sendable {
        case ack(String)
        case ackThen(String, @Sendable () async -> Void)
        case reconnect(String)
        case ignore
    }

    /// Decides what a Socket Mode message calls for. A slash command's answer goes in its ack; a
    /// click is acked first and answered on its `response_url`; an envelope seen before (Slack
    /// retries when an ack is late) is acked and not acted on again.
    func handle(_ text: String) async -> Reaction {
        guard let message = JSONValue.parse(Data(text.utf8)) else { return .ignore }
        switch message["type"]?.string {
        case "hello":
            logger.info("Slack Socket Mode connected")
            return .ignore
        case "disconnect":
            return .reconnect(message["reason"]?.string ?? "disconnect")
        default:
            break
        }
        guard let id = message["envelope_id"]?.string else { return .ignore }
        let ack: JSONValue = ["envelope_id": .string(id)]
        guard chatOps.firstSighting(ofEnvelope: id) else {
            logger.info("Slack sent an envelope again; acked, not acted on twice", metadata: ["slack.envelope": "\(id)"])
            return .ack(ack.text)
        }
        switch message["type"]?.string {
        case "slash_commands":
            guard case .object(let payload)? = message["payload"] else { return .ack(ack.text) }
            let fields = payload.compactMapValues(\.string)
            let reply = await chatOps.command(fields)
            return .ack((["envelope_id": .string(id), "payload": reply.json] as JSONValue).text)
        case "interactive":
            guard let payload = message["payload"] else { return .ack(ack.text) }
            let chatOps = chatOps
            return .ackThen(ack.text) {
                if let reply = await chatOps.interaction(payload) {
                    await chatOps.respond(reply, to: payload["response_url"]?.string)
                }
            }
        default:
            return .ack(ack.text)
        }
    }
}

/// Why a connection ended, set from inside its handler.
private final class EndReason: Sendable {
    private let reason = Mutex("closed")
    var value: String { reason.withLock { $0 } }
    func set(_ value: String) { reason.withLock { $0 = value } }
}
