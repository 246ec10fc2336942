import Foundation
import Logging
import OneTouchCore
import ServiceLifecycle
import Synchronization

/// Announces hosts in Slack by following the events log: a service beside the engine, which never
/// waits for it. A Slack outage delays messages, never a host.
///
/// Each event is planned once (`SlackPlanner`) and recorded with the cursor (`SlackStore.ingest`).
/// Messages go out in order per host, at most one post per `postInterval` in the channel and one
/// `chat.update` per `updateInterval`; `429` waits `Retry-After`, outages back off, permanent errors
/// stop delivery (credentials, channel) or drop one message (its payload). A message is marked
/// `sending` before its request and `sent` after it; one found `sending` was perhaps posted: in bot
/// mode it is looked up by its metadata key before it is posted again.
public final class SlackAnnouncer: Service, Sendable {
    let settings: SlackSettings
    let client: SlackClient
    let store: SlackStore
    let clock: any EngineClock
    let random: any RandomSource
    let logger: Logger
    let owner: String
    let holderIsGone: @Sendable (String) -> Bool
    /// Services that run and stop with the announcer (Socket Mode chatops).
    let companions: [any Service]
    private let gate: Mutex<DeliveryGate>
    static let leaseTTL = Duration.seconds(30)

    public init(
        settings: SlackSettings, transport: any HTTPTransport, databasePath: String, logger: Logger,
        clock: any EngineClock = SystemClock(), random: any RandomSource = SystemRandom(), owner: String = UUID().uuidString,
        holderIsGone: @escaping @Sendable (String) -> Bool = { _ in false }, companions: [any Service] = []
    ) throws {
        self.settings = settings
        self.client = SlackClient(
            transport: transport, apiURL: settings.apiURL, token: settings.botToken, timeout: settings.requestTimeout)
        self.store = try SlackStore(path: databasePath)
        self.clock = clock
        self.random = random
        self.logger = logger
        self.owner = owner
        self.holderIsGone = holderIsGone
        self.companions = companions
        gate = Mutex(
            DeliveryGate(
                postInterval: settings.postInterval, updateInterval: settings.updateInterval, maxBackoff: settings.maxBackoff))
    }

    var channel: String? {
        if case .bot(_, let channel) = settings.delivery { return channel }
        return nil
    }

    /// Delivery as `onetouch status` shows it.
    public var delivery: String { gate.withLock { $0.describe(now: clock.now) } }

    /// The permanent problem that stopped delivery, if one did.
    public var problem: SlackProblem? {
        gate.withLock { if case .stopped(let problem) = $0.state { problem } else { nil } }
    }

    /// What Slack shows of a host, for `onetouch status`.
    public func announcements(hostID: String) throws -> AnnouncementsView {
        let host = try store.announcements(hostID: hostID)
        return AnnouncementsView(mode: channel == nil ? "webhook" : "bot", delivery: delivery, host: host)
    }

    // MARK: Running

    public func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            for companion in companions { group.addTask { try await companion.run() } }
            try await cancelWhenGracefulShutdown { try await self.loop() }
        }
        try? store.releaseLease(owner: owner)
    }

    func loop() async throws {
        while !(try store.acquireLease(owner: owner, ttl: Self.leaseTTL, now: clock.now, holderIsGone: holderIsGone)) {
            logger.notice("Another onetouch serve announces in Slack for this database; waiting for its lease")
            try await clock.sleep(until: clock.now.addingTimeInterval(Self.leaseTTL.seconds / 3))
        }
        var leaseRenewal = clock.now.addingTimeInterval(Self.leaseTTL.seconds / 3)
        let cursor = try store.startCursor()
        logger.info(
            "Slack announcer started",
            metadata: ["slack.mode": "\(channel == nil ? "webhook" : "bot")", "slack.cursor": "\(cursor)"])
        var nextPoll = clock.now
        while !Task.isCancelled {
            var now = clock.now
            if now >= leaseRenewal {
                guard try store.acquireLease(owner: owner, ttl: Self.leaseTTL, now: now, holderIsGone: holderIsGone) else {
                    throw SlackSetupError("another onetouch serve took the Slack announcer's lease; stopping this one")
                }
                leaseRenewal = now.addingTimeInterval(Self.leaseTTL.seconds / 3)
            }
            if now >= nextPoll {
                try ingestAll(now: now)
                nextPoll = now.addingTimeInterval(settings.pollInterval.seconds)
            }
            var wake = min(nextPoll, leaseRenewal)
            if let work = try store.nextPost(bot: channel != nil), let at = gate.withLock({ $0.earliest(.post) }) {
                if at <= now {
                    try await post(work)
                    continue
                }
                wake = min(wake, at)
            }
            now = clock.now
            if channel != nil, let thread = try store.nextUpdate(), let at = gate.withLock({ $0.earliest(.update) }) {
                if at <= now {
                    try await update(thread)
                    continue
                }
                wake = min(wake, at)
            }
            try await clock.sleep(until: wake)
        }
    }

    /// Plans every event not read yet.
    func ingestAll(now: Date) throws {
        guard try store.hasNews() else { return }
        while try store.ingest(limit: 200, now: now, maxAge: settings.maxAge, channel: channel) == 200 {}
    }

    // MARK: Posting

    func post(_ work: PostWork) async throws {
        let message: SlackMessage?
        switch work {
        case .parent(let thread): message = thread.message
        case .message(let row, _): message = row.decoded
        }
        guard let message else {
            try store.markDropped(work, note: "the stored message could not be read")
            return
        }
        switch settings.delivery {
        case .bot(_, let channel):
            if work.mayHaveBeenSent {
                // The last request may have posted it: look for it by its key before posting again.
                switch try await find(work, key: message.key, channel: channel) {
                case .found(let ts):
                    try store.markPosted(work, ts: ts, now: clock.now)
                    logger.info(
                        "Slack message found posted by an earlier try; not posting it again",
                        metadata: ["host.id": "\(work.hostID)", "slack.key": "\(message.key ?? "parent")"])
                    return
                case .notFound:
                    break
                case .failed:
                    return
                }
            }
            try store.markSending(work)
            let threadTS: String?
            if case .message(_, let ts) = work { threadTS = ts } else { threadTS = nil }
            gate.withLock { $0.started(.post, at: clock.now) }
            let outcome = await client.call("chat.postMessage", json: message.postBody(channel: channel, threadTS: threadTS))
            try record(outcome, for: work, key: message.key)
        case .webhook(let url):
            if work.mayHaveBeenSent && work.sends >= 2 {
                try store.markDropped(work, note: "not sent a third time: the webhook may have delivered it already")
                logger.warning(
                    "Slack webhook message dropped after two uncertain sends",
                    metadata: ["host.id": "\(work.hostID)", "slack.key": "\(message.key ?? "-")"])
                return
            }
            if work.mayHaveBeenSent {
                logger.notice(
                    "Sending a Slack webhook message again; Slack may show it twice",
                    metadata: ["host.id": "\(work.hostID)", "slack.key": "\(message.key ?? "-")"])
            }
            try store.markSending(work)
            gate.withLock { $0.started(.post, at: clock.now) }
            let outcome = await client.webhook(url, message.webhookBody)
            try record(outcome, for: work, key: message.key)
        }
    }

    private func record(_ outcome: SlackOutcome, for work: PostWork, key: String?) throws {
        let verdict = gate.withLock { $0.finished(outcome, of: .post, at: clock.now, jitter: random.unit()) }
        let metadata: Logger.Metadata = ["host.id": "\(work.hostID)", "slack.key": "\(key ?? "parent")"]
        switch (verdict, outcome) {
        case (.done, .ok(let answer)):
            try store.markPosted(work, ts: answer["ts"]?.string, now: clock.now)
            logger.debug("Slack message posted", metadata: metadata)
        case (.retry, .unavailable(let reason, let mayHaveSent)):
            if mayHaveSent { try store.markUncertain(work, note: reason) } else { try store.markQueued(work, note: reason) }
            logger.warning("Slack unavailable; backing off", metadata: metadata.merging(["reason": "\(reason)"]) { $1 })
        case (.retry, .rateLimited(let after)):
            try store.markQueued(work, note: "rate limited by Slack")
            logger.notice("Slack rate limit; waiting Retry-After", metadata: metadata.merging(["retry_after": "\(after)"]) { $1 })
        case (.retry, _):
            try store.markQueued(work, note: "delivery is stopped")
        case (.drop(let problem), _):
            try store.markDropped(work, note: problem.description)
            logger.error(
                "Slack refused a message; dropped",
                metadata: metadata.merging(["slack.error": "\(problem.code)", "fix": "\(problem.fix)"]) { $1 })
        case (.stop(let problem), _):
            try store.markQueued(work, note: problem.description)
            logger.error(
                "Slack announcements stopped", metadata: ["slack.error": "\(problem.code)", "fix": "\(problem.fix)"])
        case (.done, _):
            try store.markPosted(work, ts: nil, now: clock.now)
        }
    }

    // MARK: Updating the parent

    func update(_ thread: ThreadRow) async throws {
        guard let ts = thread.ts, let message = thread.message else {
            try store.markFrozen(thread, note: "the stored parent could not be read")
            return
        }
        gate.withLock { $0.started(.update, at: clock.now) }
        let outcome = await client.call("chat.update", json: message.updateBody(channel: thread.channel, ts: ts))
        let verdict = gate.withLock { $0.finished(outcome, of: .update, at: clock.now, jitter: random.unit()) }
        switch verdict {
        case .done:
            try store.markShown(thread)
        case .retry:
            break  // still stale: updated when the gate opens
        case .drop(let problem) where problem.scope == .parent:
            try store.markFrozen(thread, note: problem.description)
            logger.warning(
                "Slack thread parent can no longer be updated", metadata: ["host.id": "\(thread.hostID)", "slack.error": "\(problem.code)"])
        case .drop(let problem):
            try store.markShown(thread)
            logger.error(
                "Slack refused an update of a thread parent; skipped",
                metadata: ["host.id": "\(thread.hostID)", "slack.error": "\(problem.code)"])
        case .stop(let problem):
            logger.error("Slack announcements stopped", metadata: ["slack.error": "\(problem.code)", "fix": "\(problem.fix)"])
        }
    }

    // MARK: Looking a message up

    enum Lookup: Sendable, Equatable {
        case found(ts: String)
        case notFound
        case failed
    }

    /// Searches the thread (a reply) or the channel's recent history (a parent, or a message without
    /// thread) for the message with this metadata key.
    func find(_ work: PostWork, key: String?, channel: String) async throws -> Lookup {
        let method: String
        var arguments: [(String, String)] = [("channel", channel), ("include_all_metadata", "true"), ("limit", "200")]
        let wanted: String
        switch work {
        case .parent(let thread):
            guard let key else { return .notFound }
            wanted = key
            method = "conversations.history"
            arguments.append(("oldest", Self.slackTime(thread.createdAt.addingTimeInterval(-600))))
        case .message(let row, let threadTS?):
            wanted = row.key
            method = "conversations.replies"
            arguments.append(("ts", threadTS))
        case .message(let row, nil):
            wanted = row.key
            method = "conversations.history"
            arguments.append(("oldest", Self.slackTime(row.createdAt.addingTimeInterval(-600))))
        }
        var cursor: String?
        for _ in 0..<20 {
            guard let at = gate.withLock({ $0.earliest(.read) }) else { return .failed }
            if at > clock.now { return .failed }
            gate.withLock { $0.started(.read, at: clock.now) }
            let outcome = await client.call(method, form: arguments + (cursor.map { [("cursor", $0)] } ?? []))
            guard case .ok(let answer) = outcome else {
                let verdict = gate.withLock { $0.finished(outcome, of: .read, at: clock.now, jitter: random.unit()) }
                if case .drop(let problem) = verdict, problem.scope == .parent {
                    return .notFound  // the thread is gone: nothing of ours can be in it
                }
                logger.warning(
                    "Could not look for an earlier Slack post; will try again",
                    metadata: ["host.id": "\(work.hostID)", "slack.method": "\(method)"])
                return .failed
            }
            for message in answer["messages"]?.array ?? [] where SlackMessage.key(of: message) == wanted {
                if let ts = message["ts"]?.string { return .found(ts: ts) }
            }
            guard let next = answer["response_metadata"]?["next_cursor"]?.string, !next.isEmpty else { return .notFound }
            cursor = next
        }
        return .notFound
    }

    /// Slack's time format, seconds with microseconds: `1700000000.000100`.
    static func slackTime(_ date: Date) -> String { String(format: "%.6f", max(0, date.timeIntervalSince1970)) }
}

/// A host's announcements and the delivery state, as the admin API returns them.
public struct AnnouncementsView: Sendable, Codable, Equatable {
    public var notifier = "slack"
    /// `bot` (a thread per host) or `webhook`.
    public var mode: String
    /// `delivering`, `rate limited …`, `Slack unavailable …`, or `stopped: what to fix`.
    public var delivery: String
    public var owed: Int
    public var sent: Int
    public var dropped: [String]
    public var threadTs: String?
    public var threadNote: String?

    init(mode: String, delivery: String, host: HostAnnouncements) {
        self.mode = mode
        self.delivery = delivery
        owed = host.owed
        sent = host.sent
        dropped = host.dropped
        threadTs = host.threadTS
        threadNote = host.threadNote
    }

    /// One line for `onetouch status`; more lines when something needs a person.
    public var lines: [String] {
        var lines = ["\(sent) sent, \(owed) waiting (\(mode)); delivery: \(delivery)"]
        if let threadNote { lines.append("thread: \(threadNote)") }
        lines += dropped.map { "dropped: \($0)" }
        return lines
    }
}
