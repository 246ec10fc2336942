import Foundation
import OneTouchCore

/// What `notifier: {kind: slack, ...}` configures (docs/configuration.md).
public struct SlackSettings: Sendable {
    /// How messages reach Slack. The payload holds what each mode needs, nothing more.
    public enum Delivery: Sendable {
        /// An incoming webhook: one message per announcement, no threads, no look-up after a crash.
        case webhook(url: Secret)
        /// A bot token on the Web API: one thread per host in `channel`.
        case bot(token: Secret, channel: String)
    }

    public var delivery: Delivery
    /// The Web API's base URL; the test bed's in tests.
    public var apiURL: URL
    /// At most one post per this interval in the channel (Slack: one message per second per channel).
    public var postInterval: Duration = .seconds(1)
    /// At most one `chat.update` per this interval (Tier 3: about 50 a minute).
    public var updateInterval: Duration = .milliseconds(1200)
    /// How often the events log is read for news.
    public var pollInterval: Duration = .milliseconds(200)
    public var requestTimeout: Duration = .seconds(10)
    /// Back-off after an outage: from 1 s doubling up to this.
    public var maxBackoff: Duration = .seconds(60)
    /// Events older than this when first read are not announced (a notifier turned on again after
    /// months would otherwise replay them all).
    public var maxAge: Duration = .seconds(24 * 3600)
    public var chatOps: ChatOpsSettings?

    public init(delivery: Delivery, apiURL: URL = SlackSettings.slackAPI, chatOps: ChatOpsSettings? = nil) {
        self.delivery = delivery
        self.apiURL = apiURL
        self.chatOps = chatOps
    }

    public static let slackAPI = URL(string: "https://slack.com/api/")!

    var botToken: Secret? {
        if case .bot(let token, _) = delivery { return token }
        return nil
    }

    var isWebhook: Bool {
        if case .webhook = delivery { return true }
        return false
    }

    /// Reads the `notifier` section of kind `slack`, loading the secrets it points at.
    public static func load(_ section: ConfigSection, environment: [String: String]) throws -> SlackSettings {
        try section.rejectUnknownKeys([
            "kind", "webhook_url", "bot_token", "channel", "api_url", "post_interval", "update_interval", "poll_interval",
            "request_timeout", "max_backoff", "chatops",
        ])
        let webhook = try section.secretSource("webhook_url")
        let bot = try section.secretSource("bot_token")
        let delivery: Delivery
        switch (webhook, bot) {
        case (let source?, nil):
            if section.has("channel") {
                throw section.error("channel", "a webhook posts to the channel it was made for; remove `channel` or use bot_token")
            }
            let url = try load(source, section, "webhook_url", environment)
            guard let parsed = URL(string: url.reveal()), ["https", "http"].contains(parsed.scheme ?? ""), parsed.host != nil else {
                throw section.error("webhook_url", "the secret it points at is not a URL such as https://hooks.slack.com/services/T…/B…/…")
            }
            delivery = .webhook(url: url)
        case (nil, let source?):
            let token = try load(source, section, "bot_token", environment)
            guard token.reveal().hasPrefix("xox") else {
                throw section.error("bot_token", "the secret it points at is not a Slack bot token (xoxb-…)")
            }
            let channel = try section.requiredString("channel")
            guard channel.allSatisfy({ $0.isUppercase || $0.isNumber }), channel.count >= 9 else {
                throw section.error(
                    "channel", "give the channel's id (C0123456789: in Slack, the channel's details, at the bottom), not its name")
            }
            delivery = .bot(token: token, channel: channel)
        case (nil, nil):
            throw section.error("kind", "slack needs `bot_token: {file: …}` and `channel` (threads per host), or `webhook_url: {file: …}`")
        case (_?, _?):
            throw section.error("webhook_url", "give either webhook_url or bot_token, not both")
        }
        var settings = SlackSettings(delivery: delivery)
        if let api = try section.string("api_url") {
            guard let url = URL(string: api.hasSuffix("/") ? api : api + "/"), url.scheme != nil, url.host != nil else {
                throw section.error("api_url", "expected a URL such as https://slack.com/api")
            }
            settings.apiURL = url
        }
        settings.postInterval = try section.duration("post_interval") ?? settings.postInterval
        settings.updateInterval = try section.duration("update_interval") ?? settings.updateInterval
        settings.pollInterval = try section.duration("poll_interval") ?? settings.pollInterval
        settings.requestTimeout = try section.duration("request_timeout") ?? settings.requestTimeout
        settings.maxBackoff = try section.duration("max_backoff") ?? settings.maxBackoff
        if let chatops = try section.section("chatops") {
            settings.chatOps = try ChatOpsSettings.load(chatops, environment: environment, hasBotToken: settings.botToken != nil)
        }
        return settings
    }

    static func load(_ source: SecretSource, _ section: ConfigSection, _ key: String, _ environment: [String: String]) throws -> Secret {
        do { return try source.load(environment: environment) } catch let error as ConfigurationError {
            throw section.error(key, error.reason)
        }
    }
}

/// The verbs of `/onetouch`.
public enum ChatVerb: String, CaseIterable, Sendable, Codable {
    case create, status, list, resume, retry, destroy
}

/// Who may do what from Slack, and how requests reach onetouch: signed HTTP requests (the signing
/// secret), or Socket Mode (an app-level token; onetouch connects out, nothing comes in).
public struct ChatOpsSettings: Sendable {
    /// Verifies `/v1/slack/commands` and `/v1/slack/interactions`; without it those routes do not exist.
    public var signingSecret: Secret?
    /// An app-level token (`xapp-…`, scope `connections:write`): Socket Mode.
    public var appToken: Secret?
    /// Per verb: Slack user ids (U…, W…), user group ids (S…), or `*` for everyone in the workspace.
    /// A verb that is not listed is refused to everyone.
    public var allow: [ChatVerb: Set<String>]
    /// Requests signed longer ago than this (or that far in the future) are refused.
    public var maxAge: Duration = .seconds(300)
    /// A destroy button older than this is refused: ask again.
    public var confirmationTTL: Duration = .seconds(600)
    /// Slack gives up on an answer after 3 s; a command still running then is answered "under way".
    public var answerWithin: Duration = .milliseconds(2500)

    public init(signingSecret: Secret?, allow: [ChatVerb: Set<String>], appToken: Secret? = nil) {
        self.signingSecret = signingSecret
        self.allow = allow
        self.appToken = appToken
    }

    static func load(_ section: ConfigSection, environment: [String: String], hasBotToken: Bool) throws -> ChatOpsSettings {
        try section.rejectUnknownKeys(["signing_secret", "app_token", "allow"])
        let signing = try section.secretSource("signing_secret")
        let app = try section.secretSource("app_token")
        guard signing != nil || app != nil else {
            throw section.error(
                "signing_secret",
                "is required: `signing_secret: {file: …}` (the app's Signing Secret, Basic Information page), or `app_token: {file: …}` for Socket Mode"
            )
        }
        let secret = try signing.map { try SlackSettings.load($0, section, "signing_secret", environment) }
        if let secret, secret.reveal().count < 16 {
            throw section.error("signing_secret", "the secret it points at is too short to be a Slack signing secret")
        }
        let appToken = try app.map { try SlackSettings.load($0, section, "app_token", environment) }
        if let appToken, !appToken.reveal().hasPrefix("xapp-") {
            throw section.error("app_token", "the secret it points at is not an app-level token (xapp-…, scope connections:write)")
        }
        var allow: [ChatVerb: Set<String>] = [:]
        if let rules = try section.section("allow") {
            try rules.rejectUnknownKeys(ChatVerb.allCases.map(\.rawValue))
            for verb in ChatVerb.allCases {
                guard let ids = try rules.strings(verb.rawValue) else { continue }
                for id in ids where !(id == "*" || (id.count >= 9 && id.allSatisfy { $0.isUppercase || $0.isNumber })) {
                    throw rules.error(verb.rawValue, "'\(id)' is not a Slack user id (U…), user group id (S…) or *")
                }
                if !hasBotToken, ids.contains(where: { $0.hasPrefix("S") }) {
                    throw rules.error(verb.rawValue, "user groups (S…) need bot_token, to ask Slack who is in them")
                }
                allow[verb] = Set(ids)
            }
        }
        return ChatOpsSettings(signingSecret: secret, allow: allow, appToken: appToken)
    }
}
