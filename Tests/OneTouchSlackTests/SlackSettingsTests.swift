import Foundation
import OneTouchCore
import Testing

@testable import OneTouchSlack

/// `notifier: {kind: slack, ...}`: what is accepted, and errors that name the key but never a secret.
struct SlackSettingsTests {
    static let token = "xoxb-1111-2222-secretsecret"
    static let webhook = "https://hooks.slack.com/services/T000/B000/verysecretpart"
    static let signing = "0123456789abcdef0123456789abcdef"

    static func load(_ yaml: String) throws -> SlackSettings {
        let root = try ConfigSection.parse(yaml: yaml, file: "onetouch.yaml")
        return try SlackSettings.load(
            try root.requiredSection("notifier"),
            environment: ["BOT": token, "HOOK": webhook, "SIGNING": signing, "SHORT": "short", "NOTATOKEN": "hello-there"])
    }

    static func error(_ yaml: String) -> String {
        do {
            _ = try load(yaml)
            return "accepted"
        } catch {
            return "\(error)"
        }
    }

    @Test func botModeWithChatops() throws {
        let settings = try Self.load(
            """
            notifier:
              kind: slack
              bot_token: {env: BOT}
              channel: C0123456789
              api_url: http://127.0.0.1:9999/api
              post_interval: 2s
              chatops:
                signing_secret: {env: SIGNING}
                allow: {create: [U0123ABCD, S0GROUP001], status: ["*"]}
            """)
        guard case .bot(let token, let channel) = settings.delivery else {
            Issue.record("expected bot mode")
            return
        }
        #expect(token.reveal() == Self.token && channel == "C0123456789")
        #expect(settings.apiURL.absoluteString == "http://127.0.0.1:9999/api/")
        #expect(settings.postInterval == .seconds(2))
        #expect(settings.chatOps?.allow[.create] == ["U0123ABCD", "S0GROUP001"])
        #expect(settings.chatOps?.allow[.destroy] == nil, "a verb not listed is nobody's")
    }

    @Test func webhookMode() throws {
        let settings = try Self.load("notifier: {kind: slack, webhook_url: {env: HOOK}}")
        guard case .webhook(let url) = settings.delivery else {
            Issue.record("expected webhook mode")
            return
        }
        #expect(url.reveal() == Self.webhook)
        #expect("\(settings.delivery)".contains("redacted") && !"\(settings.delivery)".contains("verysecretpart"))
    }

    @Test(arguments: [
        ("notifier: {kind: slack, bot_token: xoxb-inline, channel: C0123456789}", "notifier.bot_token: secrets are given by reference"),
        ("notifier: {kind: slack, bot_token: {env: BOT}}", "notifier.channel: is required"),
        ("notifier: {kind: slack, bot_token: {env: BOT}, channel: \"#ops\"}", "notifier.channel: give the channel's id"),
        ("notifier: {kind: slack, bot_token: {env: NOTATOKEN}, channel: C0123456789}", "not a Slack bot token"),
        ("notifier: {kind: slack, webhook_url: {env: NOTATOKEN}}", "not a URL such as https://hooks.slack.com"),
        ("notifier: {kind: slack, webhook_url: {env: HOOK}, bot_token: {env: BOT}}", "either webhook_url or bot_token"),
        ("notifier: {kind: slack, webhook_url: {env: HOOK}, channel: C0123456789}", "a webhook posts to the channel it was made for"),
        ("notifier: {kind: slack}", "slack needs `bot_token"),
        ("notifier: {kind: slack, webhook_url: {env: MISSING}}", "notifier.webhook_url: this environment variable is not set"),
        ("notifier: {kind: slack, webhook_url: {env: HOOK}, chanel: x}", "notifier.chanel: unknown setting"),
        ("notifier: {kind: slack, webhook_url: {env: HOOK}, chatops: {signing_secret: {env: SHORT}}}", "too short"),
        (
            "notifier: {kind: slack, webhook_url: {env: HOOK}, chatops: {signing_secret: {env: SIGNING}, allow: {destroy: [S0GROUP001]}}}",
            "user groups (S…) need bot_token"
        ),
        (
            "notifier: {kind: slack, bot_token: {env: BOT}, channel: C0123456789, chatops: {signing_secret: {env: SIGNING}, allow: {reboot: [\"*\"]}}}",
            "notifier.chatops.allow.reboot: unknown setting"
        ),
        (
            "notifier: {kind: slack, bot_token: {env: BOT}, channel: C0123456789, chatops: {signing_secret: {env: SIGNING}, allow: {create: [alice]}}}",
            "'alice' is not a Slack user id"
        ),
    ])
    func refusesWithTheKeyAndNeverTheSecret(yaml: String, expected: String) {
        let message = Self.error(yaml)
        #expect(message.contains(expected), "\(message)")
        for secret in [Self.token, Self.webhook, "verysecretpart", Self.signing, "hello-there"] {
            #expect(!message.contains(secret))
        }
    }
}
