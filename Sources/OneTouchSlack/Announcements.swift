import Foundation
import OneTouchCore

/// What a message says about a host, read from its row when the event is planned.
struct HostSnapshot: Sendable, Equatable {
    var id: String
    var name: String
    var fqdn: String
    var role: String
    var instanceID: String?
    var privateIP: String?
    var volumeID: String?
    var keepVolume: Bool

    init(
        id: String, name: String, fqdn: String, role: String, instanceID: String? = nil, privateIP: String? = nil,
        volumeID: String? = nil, keepVolume: Bool = false
    ) {
        self.id = id
        self.name = name
        self.fqdn = fqdn
        self.role = role
        self.instanceID = instanceID
        self.privateIP = privateIP
        self.volumeID = volumeID
        self.keepVolume = keepVolume
    }

    init(_ host: HostRecord) {
        let facts = host.decodedFacts
        self.init(
            id: host.id, name: host.name, fqdn: (try? host.decodedSpec.fqdn) ?? host.name, role: host.role,
            instanceID: facts.instanceID, privateIP: facts.privateIP, volumeID: facts.volumeID, keepVolume: host.keepVolume)
    }
}

/// The Block Kit messages onetouch posts, each with a plain-text fallback that says the same. Pure.
enum Announcements {
    /// The thread's parent: the host's state now, updated with `chat.update` as the steps progress.
    static func parent(_ host: HostSnapshot, timeline: HostTimeline, requestedBy: String?) -> SlackMessage {
        let elapsed = formatDuration(timeline.elapsed)
        let status: String
        let emoji: String
        switch timeline.kind {
        case .pending:
            (emoji, status) = (":hourglass_flowing_sand:", "waiting for a slot")
        case .running, .waiting:
            let step = timeline.step?.rawValue ?? "-"
            let verb = timeline.kind == .waiting ? "waiting for the host in" : "running"
            (emoji, status) = (":gear:", "\(verb) \(step), \(elapsed) so far")
        case .ready:
            (emoji, status) = (":white_check_mark:", "ready after \(elapsed)")
        case .failed:
            (emoji, status) = (":x:", "failed at \(timeline.step?.rawValue ?? "-") after \(elapsed): see the thread")
        case .paused:
            (emoji, status) = (":double_vertical_bar:", "paused at \(timeline.step?.rawValue ?? "-"), needs a person: see the thread")
        case .destroying:
            (emoji, status) = (":wastebasket:", "being destroyed (\(timeline.step?.rawValue ?? "-"))")
        case .destroyed:
            (emoji, status) = (":wastebasket:", "destroyed")
        }
        var context = [host.instanceID, host.privateIP].compactMap { $0 }.map(escaped)
        if let requestedBy { context.append("asked for by \(who(requestedBy))") }
        var blocks: [JSONValue] = [
            section("\(emoji) *\(escaped(host.fqdn))* · role `\(escaped(host.role))`\n\(escaped(status))")
        ]
        if !context.isEmpty { blocks.append(contextBlock(context.joined(separator: "  ·  "))) }
        return SlackMessage(text: "\(host.fqdn) (role \(host.role)): \(status)", blocks: blocks)
    }

    static func ready(_ host: HostSnapshot, timeline: HostTimeline, key: String) -> SlackMessage {
        let total = formatDuration(timeline.elapsed)
        let slowest = timeline.slowest.map { "\($0.step.rawValue) (\(formatDuration($0.seconds)))" }
        var fields: [(String, String)] = [("Role", host.role)]
        fields.append(("Instance", host.instanceID ?? "-"))
        fields.append(("Address", host.privateIP ?? "-"))
        fields.append(("Total time", total))
        if let slowest { fields.append(("Slowest step", slowest)) }
        let text =
            "\(host.fqdn) is ready (role \(host.role), instance \(host.instanceID ?? "-"), address \(host.privateIP ?? "-")) after \(total)"
            + (slowest.map { "; slowest step: \($0)" } ?? "")
        return SlackMessage(
            text: text,
            blocks: [
                section(":white_check_mark: *\(escaped(host.fqdn)) is ready* after \(total)"),
                .object([
                    "type": "section",
                    "fields": .array(fields.map { mrkdwn("*\($0.0)*\n\(escaped($0.1))", limit: 2000) }),
                ]),
            ], key: key)
    }

    /// A failed or paused host: the step, the reason, the last lines the host sent, and the exact
    /// command that continues it.
    static func failure(
        _ host: HostSnapshot, paused: Bool, step: Step?, reason: String, logTail: String?, key: String
    ) -> SlackMessage {
        let stepName = step?.rawValue ?? "-"
        let command = fixCommand(reason: reason, hostName: host.name)
        let headline = paused ? "\(host.fqdn) paused at \(stepName) and needs a person" : "\(host.fqdn) failed at \(stepName)"
        var blocks: [JSONValue] = [
            section("\(paused ? ":double_vertical_bar:" : ":x:") *\(escaped(headline))*\n\(escaped(truncated(reason, to: 2000)))")
        ]
        if let logTail, let tail = tailLines(logTail) {
            blocks.append(section("*Last lines the host sent*\n```\n\(escaped(tail))\n```"))
        }
        var fix = "*Once the cause is fixed:* `\(escaped(command))`"
        if let slash = slashEquivalent(of: command) { fix += "\nor here: `\(escaped(slash))`" }
        blocks.append(section(fix))
        return SlackMessage(text: "\(headline): \(truncated(reason, to: 1000)). Then run: \(command)", blocks: blocks, key: key)
    }

    static func destroyed(_ host: HostSnapshot, key: String) -> SlackMessage {
        let volume = host.keepVolume ? host.volumeID.map { "; its data volume \($0) was kept" } ?? "; its data volume was kept" : ""
        let text = "\(host.fqdn) was destroyed\(volume)"
        return SlackMessage(
            text: text, blocks: [section(":wastebasket: *\(escaped(host.fqdn)) was destroyed*\(escaped(volume))")], key: key)
    }

    /// A person's command (CLI or Slack) or a refused one, as a short line in the thread.
    static func command(_ host: HostSnapshot, reason: String, actor: String, key: String) -> SlackMessage {
        let text = "\(host.fqdn): \(reason) (\(whoPlain(actor)))"
        return SlackMessage(text: text, blocks: [contextBlock("\(escaped(reason)) by \(who(actor))")], key: key)
    }

    /// A drift transition (configuration or cloud), in the host's thread: once per transition.
    static func drift(_ host: HostSnapshot, reason: String, key: String) -> SlackMessage {
        SlackMessage(text: "\(host.fqdn): \(reason)", blocks: [contextBlock(escaped(reason))], key: key)
    }

    // MARK: Pieces

    /// The command that continues a failed host: the one its reason names, else `onetouch resume NAME`.
    static func fixCommand(reason: String, hostName: String) -> String {
        let quoted = reason.split(separator: "`", omittingEmptySubsequences: false).enumerated()
            .filter { $0.offset % 2 == 1 }.map { String($0.element) }
        let commands = quoted.filter { $0.hasPrefix("onetouch resume ") || $0.hasPrefix("onetouch retry ") }
        return commands.last ?? "onetouch resume \(hostName)"
    }

    /// `/onetouch resume NAME` or `/onetouch retry NAME from=STEP` for a CLI command, if there is one.
    static func slashEquivalent(of command: String) -> String? {
        let words = command.split(separator: " ").map(String.init)
        guard words.count >= 3, words[0] == "onetouch" else { return nil }
        switch words[1] {
        case "resume" where words.count == 3: return "/onetouch resume \(words[2])"
        case "retry" where words.count == 5 && words[3] == "--from": return "/onetouch retry \(words[2]) from=\(words[4])"
        default: return nil
        }
    }

    /// The last lines of a log tail, at most 15 lines and 2,400 characters, without fences inside.
    static func tailLines(_ log: String) -> String? {
        var lines = log.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        while lines.last?.trimmingCharacters(in: .whitespaces).isEmpty == true { lines.removeLast() }
        guard !lines.isEmpty else { return nil }
        var tail = lines.suffix(15).joined(separator: "\n").replacingOccurrences(of: "```", with: "'''")
        if tail.count > 2400 { tail = "…" + String(tail.suffix(2399)) }
        return tail
    }

    static func who(_ actor: String) -> String {
        if actor.hasPrefix("slack:") { return "<@\(actor.dropFirst(6).filter { $0.isLetter || $0.isNumber })>" }
        return escaped(whoPlain(actor))
    }

    static func whoPlain(_ actor: String) -> String {
        switch actor {
        case "admin": "the CLI"
        case "engine": "onetouch"
        // The admin token that acted, by its name (`admin_tokens`).
        case let named where named.hasPrefix("admin:"): "the CLI as \(named.dropFirst(6))"
        default: actor.hasPrefix("slack:") ? "Slack user \(actor.dropFirst(6))" : actor
        }
    }

    /// A mrkdwn text object; a section's text holds 3,000 characters, a field's 2,000.
    static func mrkdwn(_ text: String, limit: Int = 3000) -> JSONValue {
        ["type": "mrkdwn", "text": .string(truncated(text, to: limit))]
    }

    static func section(_ text: String) -> JSONValue { ["type": "section", "text": mrkdwn(text)] }

    static func contextBlock(_ text: String) -> JSONValue { ["type": "context", "elements": [mrkdwn(text)]] }
}
