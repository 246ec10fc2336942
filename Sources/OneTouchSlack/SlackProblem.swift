/// An error Slack gives that no retry can cure, with what it reaches and what to do about it.
public struct SlackProblem: Sendable, Equatable, CustomStringConvertible {
    /// How far the error reaches.
    public enum Scope: String, Sendable, Equatable {
        /// The credentials or the channel: every further message would fail too, so delivery stops.
        case integration
        /// This one message: it is dropped, the others go on.
        case message
        /// The thread's parent cannot be edited any more: its updates stop, replies go on.
        case parent
    }

    public var code: String
    public var scope: Scope
    /// What to do, for the person reading `onetouch status` or the log.
    public var fix: String

    public var description: String { "\(code): \(fix)" }

    /// The problem a Slack error code names, or nil when a retry may help (rate limits, outages).
    /// `webhook` says whether the code came from an incoming webhook (whose URL is the credential).
    public static func classify(_ code: String, webhook: Bool) -> SlackProblem? {
        if transient.contains(code) { return nil }
        let credential = webhook ? "the webhook URL" : "the bot token"
        let restart = "then restart `onetouch serve`; the messages waiting are sent then"
        switch code {
        case "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "invalid_token", "no_service",
            "no_service_id", "no_active_hooks", "team_disabled", "no_team", "org_login_required", "team_access_not_granted",
            "not_allowed_token_type", "ekm_access_denied", "team_not_found", "enterprise_is_restricted", "access_denied":
            return SlackProblem(
                code: code, scope: .integration,
                fix:
                    "Slack does not accept \(credential) (\(code)): create a new one, put it where notifier.\(webhook ? "webhook_url" : "bot_token") points, \(restart)"
            )
        case "missing_scope", "no_permission":
            return SlackProblem(
                code: code, scope: .integration,
                fix:
                    "the Slack app lacks a permission (\(code)): add the chat:write, channels:history and groups:history scopes (and usergroups:read for user groups), reinstall the app, \(restart)"
            )
        case "channel_not_found", "channel_is_archived", "is_archived", "is_inactive", "not_in_channel", "user_not_found",
            "posting_to_general_channel_denied", "action_prohibited", "restricted_action", "restricted_action_read_only_channel",
            "restricted_action_thread_only_channel", "restricted_action_non_threadable_channel", "restricted_action_thread_locked",
            "cannot_reply_to_message", "message_limit_exceeded", "method_not_supported_for_channel_type":
            return SlackProblem(
                code: code, scope: .integration,
                fix:
                    "Slack refuses to post in the configured channel (\(code)): check notifier.channel (an id such as C0123456789), invite the bot with `/invite @onetouch`, unarchive the channel or lift the posting restriction, \(restart)"
            )
        case "message_not_found", "cant_update_message", "edit_window_closed", "thread_not_found", "block_mismatch",
            "streaming_state_conflict", "update_failed":
            return SlackProblem(
                code: code, scope: .parent,
                fix: "the thread's first message can no longer be edited (\(code)); replies still go to the thread")
        default:
            return SlackProblem(
                code: code, scope: .message,
                fix:
                    "Slack refused this message (\(code)); it is dropped and the others go on. This is a bug in onetouch's message: report it with the log line"
            )
        }
    }

    /// Codes that say "later": a retry with back-off may succeed.
    static let transient: Set<String> = [
        "ratelimited", "rate_limited", "service_unavailable", "fatal_error", "request_timeout", "internal_error", "rollup_error",
        "timeout",
    ]
}
