import Foundation

/// One Slack message: the plain-text fallback (notifications, screen readers, webhooks that drop
/// blocks), the Block Kit blocks, and the key that finds it again after a crash.
public struct SlackMessage: Sendable, Equatable, Codable {
    public var text: String
    public var blocks: [JSONValue]
    /// Unique per host and event. Sent as the message's `metadata`, so a send that may have reached
    /// Slack before a crash is looked up instead of posted again.
    public var key: String?

    public init(text: String, blocks: [JSONValue], key: String? = nil) {
        self.text = text
        self.blocks = blocks
        self.key = key
    }

    /// The `event_type` of every message onetouch posts.
    public static let metadataEventType = "onetouch_announcement"

    var metadata: JSONValue? {
        guard let key else { return nil }
        return ["event_type": .string(Self.metadataEventType), "event_payload": ["key": .string(key)]]
    }

    /// The body of `chat.postMessage`.
    func postBody(channel: String, threadTS: String?) -> JSONValue {
        var fields: [String: JSONValue] = [
            "channel": .string(channel), "text": .string(text), "blocks": .array(blocks), "unfurl_links": false,
            "unfurl_media": false,
        ]
        if let threadTS { fields["thread_ts"] = .string(threadTS) }
        if let metadata { fields["metadata"] = metadata }
        return .object(fields)
    }

    /// The body of `chat.update` (the metadata stays as posted).
    func updateBody(channel: String, ts: String) -> JSONValue {
        ["channel": .string(channel), "ts": .string(ts), "text": .string(text), "blocks": .array(blocks)]
    }

    /// The body of an incoming-webhook post.
    var webhookBody: JSONValue {
        var fields: [String: JSONValue] = ["text": .string(text), "blocks": .array(blocks), "unfurl_links": false]
        if let metadata { fields["metadata"] = metadata }
        return .object(fields)
    }

    /// The key in a message Slack returned (`conversations.history` / `replies` with `include_all_metadata`).
    static func key(of message: JSONValue) -> String? {
        guard message["metadata"]?["event_type"]?.string == metadataEventType else { return nil }
        return message["metadata"]?["event_payload"]?["key"]?.string
    }
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters: text from hosts and people is
/// escaped (`&` first) so it cannot mention `@channel` or forge a link.
func escaped(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;")
}

/// At most `limit` characters, cut with an ellipsis.
func truncated(_ text: String, to limit: Int) -> String {
    text.count <= limit ? text : String(text.prefix(limit - 1)) + "…"
}

/// `42s`, `4m12s`, `1h02m`.
func formatDuration(_ seconds: TimeInterval) -> String {
    let total = max(0, Int(seconds.rounded()))
    if total < 60 { return "\(total)s" }
    if total < 3600 { return "\(total / 60)m\(String(format: "%02d", total % 60))s" }
    return "\(total / 3600)h\(String(format: "%02d", (total % 3600) / 60))m"
}
