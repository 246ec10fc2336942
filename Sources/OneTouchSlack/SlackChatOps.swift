import Foundation
import Logging
import OneTouchCore
import Synchronization

/// An answer to Slack: the body of the HTTP response to a slash command, or of a `response_url` post.
public struct SlackReply: Sendable, Equatable {
    public var text: String
    public var blocks: [JSONValue]?
    /// Visible to the channel; by default only the person who asked sees it.
    public var inChannel = false
    /// Replaces the message with the button that was clicked.
    public var replaceOriginal = false

    public init(text: String, blocks: [JSONValue]? = nil, inChannel: Bool = false, replaceOriginal: Bool = false) {
        self.text = text
        self.blocks = blocks
        self.inChannel = inChannel
        self.replaceOriginal = replaceOriginal
    }

    public var json: JSONValue {
        var fields: [String: JSONValue] = ["text": .string(text), "response_type": inChannel ? "in_channel" : "ephemeral"]
        if let blocks { fields["blocks"] = .array(blocks) }
        if replaceOriginal { fields["replace_original"] = true }
        return .object(fields)
    }
}

/// `/onetouch` from Slack: verifies each request, checks who may do what, acts through `HostService`
/// like the CLI (the actor is `slack:USER`), and answers within Slack's 3 seconds. Progress then shows
/// in the host's thread, which the announcer keeps from the events.
public final class SlackChatOps: Sendable {
    let settings: ChatOpsSettings
    let service: HostService
    let store: SlackStore
    let client: SlackClient
    let apiURL: URL
    let clock: any EngineClock
    let logger: Logger
    private let groups = Mutex<[String: (members: Set<String>, at: Date)]>([:])

    public init(
        settings: SlackSettings, service: HostService, transport: any HTTPTransport, databasePath: String, logger: Logger,
        clock: any EngineClock = SystemClock()
    ) throws {
        guard let chatOps = settings.chatOps else { throw SlackSetupError("notifier.chatops is not configured") }
        self.settings = chatOps
        self.service = service
        self.store = try SlackStore(path: databasePath)
        self.client = SlackClient(transport: transport, apiURL: settings.apiURL, token: settings.botToken, timeout: .seconds(5))
        self.apiURL = settings.apiURL
        self.clock = clock
        self.logger = logger
    }

    // MARK: Verification

    /// Refuses a request that is unsigned, signed with another secret, older than 5 minutes, or
    /// already received (a replay).
    public func verify(timestamp: String?, signature: String?, body: Data) throws(SlackSignature.Refusal) {
        guard let secret = settings.signingSecret else { throw .badSignature }
        try SlackSignature.verify(
            secret: secret, timestamp: timestamp, signature: signature, body: body, now: clock.now,
            maxAge: settings.maxAge)
        let first: Bool
        do { first = try store.firstSighting(of: signature ?? "", now: clock.now, window: settings.maxAge) } catch {
            logger.error("Could not record a Slack request signature", metadata: ["error": "\(error)"])
            throw .replayed
        }
        guard first else { throw .replayed }
    }

    /// True the first time a Socket Mode envelope is seen: Slack sends one again when its ack was
    /// late, and it must not act twice.
    func firstSighting(ofEnvelope id: String) -> Bool {
        (try? store.firstSighting(of: "envelope:\(id)", now: clock.now, window: .seconds(3600))) ?? true
    }

    // MARK: Slash commands

    /// The answer to a verified slash command (its form fields). A command still running after
    /// `answerWithin` is answered "under way"; its outcome goes to `response_url` when it is done.
    public func command(_ fields: [String: String]) async -> SlackReply {
        let user = fields["user_id"] ?? ""
        let command: ChatCommand
        do { command = try ChatCommand.parse(fields["text"] ?? "") } catch {
            return SlackReply(text: error.description)
        }
        let responseURL = fields["response_url"].flatMap { acceptableResponseURL($0) }
        return await answer(within: settings.answerWithin, responseURL: responseURL) {
            await self.run(command, user: user)
        }
    }

    func run(_ command: ChatCommand, user: String) async -> SlackReply {
        guard let verb = command.verb else { return SlackReply(text: "Usage: \(ChatCommand.usage)") }
        guard !user.isEmpty else { return SlackReply(text: "The request names no Slack user; refused.") }
        guard await allowed(verb, user: user) else { return refuse(verb, user: user, hostName: command.hostName) }
        let actor = "slack:\(user)"
        logger.info(
            "Slack command", metadata: ["slack.user": "\(user)", "command": "\(verb.rawValue)", "host.name": "\(command.hostName ?? "-")"])
        do {
            switch command {
            case .create(let name, let role):
                let host = try await service.create(.init(name: name, role: role), actor: actor)
                return SlackReply(text: "\(host.name) is created (\(host.id), role \(host.role)); its thread follows every step.")
            case .status(let name):
                return SlackReply(text: Self.describe(try service.status(named: name)))
            case .list(let state):
                let hosts = try service.store.hosts(state: state)
                guard !hosts.isEmpty else { return SlackReply(text: "No \(state.map { "\($0.rawValue) " } ?? "")hosts.") }
                let lines = hosts.prefix(50).map { "• `\($0.name)` \($0.hostState)" }
                let more = hosts.count > 50 ? "\n… and \(hosts.count - 50) more: `onetouch list`" : ""
                return SlackReply(text: escaped(lines.joined(separator: "\n")) + more)
            case .resume(let name):
                let host = try await service.resume(name, actor: actor)
                return SlackReply(text: "\(host.name) resumes (\(host.hostState)); the thread follows it.")
            case .retry(let name, let step):
                let host = try await service.retry(name, from: step, actor: actor)
                return SlackReply(text: "\(host.name) runs again from \(step.rawValue) (\(host.hostState)); the thread follows it.")
            case .destroy(let name):
                let host = try service.host(named: name)
                guard host.hostState != .destroyed else { return SlackReply(text: "\(name) is already destroyed.") }
                return confirmation(host, requestedAt: clock.now)
            case .help:
                return SlackReply(text: "Usage: \(ChatCommand.usage)")
            }
        } catch let error as ServiceError {
            return SlackReply(text: escaped(error.message))
        } catch {
            logger.error("Slack command failed", metadata: ["error": "\(error)", "slack.user": "\(user)"])
            return SlackReply(text: "onetouch could not do that (an internal error; see the server log).")
        }
    }

    static func describe(_ host: HostView) -> String {
        var lines = ["*\(escaped(host.fqdn))* (\(host.id)): \(host.state)\(host.step.map { " (\($0))" } ?? "")"]
        if let reason = host.reason { lines.append("reason: \(escaped(truncated(reason, to: 1500)))") }
        lines.append("role \(escaped(host.role)) · generation \(host.generation)")
        if let instance = host.instanceId { lines.append("instance \(instance) · address \(host.privateIp ?? "-")") }
        if let volume = host.volumeId { lines.append("volume \(volume)") }
        return lines.joined(separator: "\n")
    }

    // MARK: Destroy, confirmed

    static let destroyAction = "onetouch_destroy"
    static let cancelAction = "onetouch_cancel"

    /// The question with a danger button; nothing happens until it is clicked (and confirmed).
    func confirmation(_ host: HostRecord, requestedAt: Date) -> SlackReply {
        let value: JSONValue = ["host": .string(host.id), "name": .string(host.name), "at": .int(Int(requestedAt.timeIntervalSince1970))]
        let question =
            "Destroy \(host.name) (\(host.id), \(host.hostState))? This terminates its instance, removes its directory entry and deletes its data volume."
        let button: JSONValue = [
            "type": "button", "action_id": .string(Self.destroyAction), "style": "danger", "value": .string(value.text),
            "text": ["type": "plain_text", "text": .string(truncated("Destroy \(host.name)", to: 75))],
            "confirm": [
                "title": ["type": "plain_text", "text": "Destroy this host?"],
                "text": ["type": "plain_text", "text": .string(truncated("\(host.name) and its data volume will be gone.", to: 300))],
                "confirm": ["type": "plain_text", "text": "Destroy"], "deny": ["type": "plain_text", "text": "Keep it"],
                "style": "danger",
            ],
        ]
        let cancel: JSONValue = [
            "type": "button", "action_id": .string(Self.cancelAction), "value": .string(host.name),
            "text": ["type": "plain_text", "text": "Cancel"],
        ]
        return SlackReply(
            text: question,
            blocks: [Announcements.section(escaped(question)), ["type": "actions", "elements": [button, cancel]]])
    }

    /// A verified `block_actions` payload. Returns the reply for its `response_url` (nil when it is
    /// not ours); destroys only on our button, clicked by someone allowed, for the same host, in time.
    public func interaction(_ payload: JSONValue) async -> SlackReply? {
        guard payload["type"]?.string == "block_actions", let action = payload["actions"]?.array?.first,
            let actionID = action["action_id"]?.string
        else { return nil }
        let user = payload["user"]?["id"]?.string ?? ""
        switch actionID {
        case Self.cancelAction:
            return SlackReply(text: "Nothing destroyed.", replaceOriginal: true)
        case Self.destroyAction:
            guard let value = action["value"]?.string.flatMap({ JSONValue.parse(Data($0.utf8)) }),
                let hostID = value["host"]?.string, let name = value["name"]?.string, case .int(let at)? = value["at"]
            else { return SlackReply(text: "This button is not one onetouch made; nothing destroyed.", replaceOriginal: true) }
            guard !user.isEmpty, await allowed(.destroy, user: user) else {
                var reply = refuse(.destroy, user: user, hostName: name)
                reply.replaceOriginal = true
                return reply
            }
            let age = clock.now.timeIntervalSince1970 - Double(at)
            guard age >= -60, age <= settings.confirmationTTL.seconds else {
                return SlackReply(
                    text:
                        "This button is older than \(formatDuration(settings.confirmationTTL.seconds)); run `/onetouch destroy \(name)` again. Nothing destroyed.",
                    replaceOriginal: true)
            }
            do {
                let host = try service.host(named: name)
                guard host.id == hostID else {
                    return SlackReply(
                        text: "\(name) is no longer the host you were asked about (it was destroyed and created again); nothing destroyed.",
                        replaceOriginal: true)
                }
                _ = try await service.destroy(name, keepVolume: false, actor: "slack:\(user)")
                logger.info("Slack destroy confirmed", metadata: ["slack.user": "\(user)", "host.id": "\(hostID)"])
                return SlackReply(
                    text: "Destroying \(name) (confirmed by <@\(user)>); the thread follows the teardown.", replaceOriginal: true)
            } catch let error as ServiceError {
                return SlackReply(text: escaped(error.message), replaceOriginal: true)
            } catch {
                logger.error("Slack destroy failed", metadata: ["error": "\(error)", "host.id": "\(hostID)"])
                return SlackReply(text: "onetouch could not do that (an internal error; see the server log).", replaceOriginal: true)
            }
        default:
            return nil
        }
    }

    // MARK: Who may do what

    /// Whether `user` may use `verb`: listed by id, in a listed user group, or the verb allows `*`.
    func allowed(_ verb: ChatVerb, user: String) async -> Bool {
        let rules = settings.allow[verb] ?? []
        if rules.contains("*") || rules.contains(user) { return true }
        for group in rules.sorted() where group.hasPrefix("S") {
            if await members(of: group).contains(user) { return true }
        }
        return false
    }

    /// A user group's members, asked of Slack at most once a minute per group.
    func members(of group: String) async -> Set<String> {
        let now = clock.now
        if let cached = groups.withLock({ $0[group] }), now.timeIntervalSince(cached.at) < 60 { return cached.members }
        switch await client.call("usergroups.users.list", form: [("usergroup", group)]) {
        case .ok(let answer):
            let members = Set((answer["users"]?.array ?? []).compactMap(\.string))
            groups.withLock { $0[group] = (members, now) }
            return members
        default:
            logger.warning("Could not ask Slack who is in a user group; treating it as empty", metadata: ["slack.usergroup": "\(group)"])
            return groups.withLock { $0[group]?.members } ?? []
        }
    }

    /// Refuses, says why, and records it in the host's events (when the host exists) and the log.
    func refuse(_ verb: ChatVerb, user: String, hostName: String?) -> SlackReply {
        let reason = "refused: \(verb.rawValue) from Slack (not allowed by notifier.chatops.allow.\(verb.rawValue))"
        logger.notice(
            "Slack command refused", metadata: ["slack.user": "\(user)", "command": "\(verb.rawValue)", "host.name": "\(hostName ?? "-")"])
        if let hostName, let host = try? service.store.host(named: hostName) {
            do { try store.recordRefusal(hostID: host.id, reason: reason, actor: "slack:\(user)", now: clock.now) } catch {
                logger.error("Could not record a refused Slack command", metadata: ["error": "\(error)", "host.id": "\(host.id)"])
            }
        }
        return SlackReply(
            text:
                "<@\(user)> may not \(verb.rawValue) hosts from Slack: ask someone listed under notifier.chatops.allow.\(verb.rawValue), or an admin with the CLI. Nothing was done."
        )
    }

    // MARK: Answering in time

    /// The `response_url` Slack gave, if it is Slack's (or the test bed's, on the API's host).
    func acceptableResponseURL(_ text: String) -> URL? {
        guard let url = URL(string: text), let host = url.host else { return nil }
        if url.scheme == "https" && host == "hooks.slack.com" { return url }
        if url.scheme == apiURL.scheme && host == apiURL.host && url.port == apiURL.port { return url }
        return nil
    }

    /// Posts a reply to a `response_url` (a button's outcome, or a command's that finished late).
    public func respond(_ reply: SlackReply, to responseURL: URL) async {
        if case .ok = await client.webhook(Secret(responseURL.absoluteString), reply.json) { return }
        logger.warning("Could not answer on Slack's response_url")
    }

    public func respond(_ reply: SlackReply, to responseURL: String?) async {
        guard let text = responseURL, let url = acceptableResponseURL(text) else { return }
        await respond(reply, to: url)
    }

    /// The operation's reply if it is done within `limit`; else a note that it is under way, and the
    /// reply goes to `responseURL` when it is done.
    func answer(
        within limit: Duration, responseURL: URL?, _ operation: @escaping @Sendable () async -> SlackReply
    ) async -> SlackReply {
        let slot = ReplySlot()
        return await withCheckedContinuation { continuation in
            slot.set(continuation)
            Task {
                let reply = await operation()
                if !slot.resume(reply), let responseURL { await self.respond(reply, to: responseURL) }
            }
            Task {
                try? await Task.sleep(for: limit)
                _ = slot.resume(SlackReply(text: "Under way; the outcome follows here and in the host's thread."))
            }
        }
    }
}

/// A continuation resumed once, by whichever comes first.
private final class ReplySlot: Sendable {
    private let continuation = Mutex<CheckedContinuation<SlackReply, Never>?>(nil)

    func set(_ value: CheckedContinuation<SlackReply, Never>) { continuation.withLock { $0 = value } }

    /// Resumes with `reply` unless already resumed; says whether it did.
    func resume(_ reply: SlackReply) -> Bool {
        guard
            let waiting = continuation.withLock({ value -> CheckedContinuation<SlackReply, Never>? in
                defer { value = nil }
                return value
            })
        else { return false }
        waiting.resume(returning: reply)
        return true
    }
}
