import Logging

/// Announces hosts in the structured log: the notifier for set-ups without Slack.
public struct LogNotifier: Notifier {
    let logger: Logger
    public init(logger: Logger) { self.logger = logger }
    public func announce(_ announcement: Announcement) async throws {
        logger.notice(
            "\(announcement.text)",
            metadata: [
                "announcement": "\(announcement.kind.rawValue)", "host.id": "\(announcement.hostID)",
                "host.name": "\(announcement.hostName)", "role": "\(announcement.role)",
            ])
    }
}
