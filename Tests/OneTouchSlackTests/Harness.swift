import Foundation
import Logging
import OneTouchCore
import OneTouchTesting

@testable import OneTouchSlack

/// An engine on a real SQLite file (fakes for the cloud and the directory), Slack in memory, and
/// announcers on the same database that a test starts and kills.
final class SlackHarness: @unchecked Sendable {
    let bed: EngineTestBed
    let slack = FakeSlack()
    let logs = LogCapture()

    init() throws {
        bed = try EngineTestBed()
    }

    deinit { bed.remove() }

    static func settings(webhook: Bool = false, postInterval: Duration = .milliseconds(20)) -> SlackSettings {
        var settings = SlackSettings(
            delivery: webhook
                ? .webhook(url: Secret(FakeSlack.webhookURL)) : .bot(token: Secret(FakeSlack.token), channel: FakeSlack.channel),
            apiURL: URL(string: "https://slack.test/api/")!)
        settings.postInterval = postInterval
        settings.updateInterval = postInterval
        settings.pollInterval = .milliseconds(10)
        settings.maxBackoff = .milliseconds(200)
        settings.maxAge = .seconds(100 * 365 * 86400)  // the test bed's clock is in 2027
        return settings
    }

    func announcer(_ settings: SlackSettings = SlackHarness.settings(), owner: String = UUID().uuidString) throws -> SlackAnnouncer {
        try SlackAnnouncer(
            settings: settings, transport: slack, databasePath: bed.databasePath, logger: logs.logger(label: "slack"), owner: owner,
            holderIsGone: { _ in true })
    }

    /// Starts an announcer's loop; cancel the task to stop it as a crash would (no clean-up runs).
    /// The cursor is placed first, as the loop would: events from now on are announced.
    func start(_ announcer: SlackAnnouncer) -> Task<Void, any Error> {
        _ = try? announcer.store.startCursor()
        return Task { try await announcer.loop() }
    }

    /// Host ready, driven through every step by the engine test bed.
    @discardableResult
    func ready(_ name: String) async throws -> HostRecord {
        try await bed.create(name)
        try await bed.settle()
        return try bed.host(name)
    }
}

/// Waits until `condition` holds (checked every 10 ms), or fails the wait after `timeout`.
func eventually(
    _ what: String = "condition", timeout: Duration = .seconds(10), _ condition: () throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    throw TimedOut(what: what)
}

struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

extension Duration {
    var milliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
}
