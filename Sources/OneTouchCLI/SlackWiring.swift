import Foundation
import Hummingbird
import Logging
import OneTouchCore
import OneTouchHTTP
import OneTouchServer
import OneTouchSlack
import ServiceLifecycle

/// Slack as the configuration asks for it: its settings (secrets loaded) and the transport it uses.
public struct SlackIntegration: Sendable {
    public var settings: SlackSettings
    public var transport: any HTTPTransport
    public init(settings: SlackSettings, transport: any HTTPTransport) {
        self.settings = settings
        self.transport = transport
    }
}

extension AdapterRegistry {
    /// Slack, when `notifier.kind` is `slack`; nil otherwise. The engine's own announcement still goes
    /// to the log (`makeNotifier`): Slack is told by the announcer, which follows the events, so that
    /// a Slack outage never holds a host back.
    static func makeSlack(_ section: ConfigSection, environment: [String: String]) throws -> SlackIntegration? {
        guard try section.requiredString("kind") == "slack" else { return nil }
        return SlackIntegration(settings: try SlackSettings.load(section, environment: environment), transport: AsyncHTTPClientTransport())
    }
}

extension OneTouchApplication {
    /// The announcer service and Slack's routes, when Slack is configured.
    static func wireSlack(
        _ slack: SlackIntegration?, router: Router<BasicRequestContext>, service: HostService, configuration: Configuration,
        adminTokens: [AdminToken], clock: any EngineClock, owner: String, logger: Logger
    ) throws -> SlackAnnouncer? {
        guard let slack else { return nil }
        let chatOps = try slack.settings.chatOps.map { _ in
            try SlackChatOps(
                settings: slack.settings, service: service, transport: slack.transport, databasePath: configuration.database,
                logger: logger, clock: clock)
        }
        var companions: [any Service] = []
        if let chatOps, let appToken = slack.settings.chatOps?.appToken {
            companions.append(
                SlackSocketMode(
                    chatOps: chatOps, appToken: appToken, transport: slack.transport, apiURL: slack.settings.apiURL, logger: logger))
        }
        let announcer = try SlackAnnouncer(
            settings: slack.settings, transport: slack.transport, databasePath: configuration.database, logger: logger, clock: clock,
            owner: owner, holderIsGone: ProcessLease.holderIsGone, companions: companions)
        OneTouchServer.addSlackRoutes(
            to: router, announcer: announcer, chatOps: slack.settings.chatOps?.signingSecret == nil ? nil : chatOps, service: service,
            adminTokens: adminTokens, logger: logger)
        return announcer
    }
}
