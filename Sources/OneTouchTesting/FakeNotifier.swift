import OneTouchCore
import Synchronization

/// Records announcements. For tests only.
public final class FakeNotifier: Notifier, Sendable {
    public let faults = FaultPlan()
    private let sent = Mutex<[Announcement]>([])
    public init() {}

    public var announcements: [Announcement] { sent.withLock { $0 } }

    public func announce(_ announcement: Announcement) async throws {
        try faults.perform("announce") { sent.withLock { $0.append(announcement) } }
    }
}
