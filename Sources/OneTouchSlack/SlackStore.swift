import Foundation
import GRDB
import OneTouchCore

/// The announcer's side of the database: the cursor over the events log, the threads, the outbox,
/// and the signatures of chatops requests already seen.
///
/// It has a connection pool of its own on `serve`'s database file (the engine's `Store` does not
/// know Slack); SQLite serialises its few writes with the engine's. The tables come from migration
/// 0004, applied when `Store` opens the file.
final class SlackStore: Sendable {
    private let pool: DatabasePool
    static let cursorName = "slack"

    init(path: String) throws {
        var configuration = GRDB.Configuration()
        configuration.busyMode = .timeout(10)
        configuration.foreignKeysEnabled = true
        configuration.label = "slack"
        pool = try DatabasePool(path: path, configuration: configuration)
        try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        let ready = try pool.read { db in try db.tableExists("slack_outbox") }
        guard ready else {
            throw SlackSetupError(
                "the database at \(path) has no Slack tables (migration 0004); open it with this version's `onetouch serve` first")
        }
    }

    // MARK: Lease

    static let leaseName = "announcer-slack"

    /// Takes or renews the announcer's lease (a row of `leases`, like the engine's): two `serve`
    /// processes on one database never both post. False while another live owner holds it.
    func acquireLease(owner: String, ttl: Duration, now: Date, holderIsGone: @Sendable (String) -> Bool) throws -> Bool {
        try pool.write { db in
            if let row = try Row.fetchOne(db, sql: "SELECT owner, expires_at FROM leases WHERE name = ?", arguments: [Self.leaseName]) {
                let holder: String = row["owner"]
                let expires: Date = row["expires_at"]
                if holder != owner && expires > now && !holderIsGone(holder) { return false }
            }
            try db.execute(
                sql: """
                    INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)
                    ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
                    """, arguments: [Self.leaseName, owner, now.addingTimeInterval(ttl.seconds)])
            return true
        }
    }

    func releaseLease(owner: String) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM leases WHERE name = ? AND owner = ?", arguments: [Self.leaseName, owner])
        }
    }

    // MARK: Following the events log

    /// Where the cursor is; on the first start, the end of the log (what happened before Slack was
    /// configured is not announced).
    func startCursor() throws -> Int64 {
        try pool.write { db in
            if let id = try Int64.fetchOne(
                db, sql: "SELECT last_event_id FROM announcer_cursors WHERE name = ?", arguments: [Self.cursorName])
            {
                return id
            }
            let last = try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM events") ?? 0
            try db.execute(
                sql: "INSERT INTO announcer_cursors (name, last_event_id) VALUES (?, ?)", arguments: [Self.cursorName, last])
            return last
        }
    }

    /// Whether the events log has grown past the cursor: a read, so that an idle announcer polling
    /// every 200 ms never takes the write lock the engine commits under.
    func hasNews() throws -> Bool {
        try pool.read { db in
            let cursor =
                try Int64.fetchOne(
                    db, sql: "SELECT last_event_id FROM announcer_cursors WHERE name = ?", arguments: [Self.cursorName]) ?? 0
            return try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM events").map { $0 > cursor } ?? false
        }
    }

    /// Reads up to `limit` events after the cursor, plans each and records the plans with the new
    /// cursor in one transaction. Returns how many events were read.
    func ingest(limit: Int, now: Date, maxAge: Duration, channel: String?) throws -> Int {
        try pool.write { db in
            let cursor =
                try Int64.fetchOne(
                    db, sql: "SELECT last_event_id FROM announcer_cursors WHERE name = ?", arguments: [Self.cursorName]) ?? 0
            let events = try EventRecord.fetchAll(
                db, sql: "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", arguments: [cursor, limit])
            guard let last = events.last?.id else { return 0 }
            let oldest = now.addingTimeInterval(-maxAge.seconds)
            for event in events where event.at >= oldest {
                try Self.record(event, db: db, now: now, channel: channel)
            }
            try db.execute(
                sql: "UPDATE announcer_cursors SET last_event_id = ? WHERE name = ?", arguments: [last, Self.cursorName])
            return events.count
        }
    }

    private static func record(_ event: EventRecord, db: Database, now: Date, channel: String?) throws {
        guard let eventID = event.id,
            let host = try HostRecord.fetchOne(db, sql: "SELECT * FROM hosts WHERE id = ?", arguments: [event.hostID])
        else { return }
        let history = try EventRecord.fetchAll(
            db, sql: "SELECT * FROM events WHERE host_id = ? AND id <= ? ORDER BY id", arguments: [host.id, eventID])
        var failureLog: String?
        if HostTimeline.kind(of: event.toState) == .failed {
            failureLog = try String.fetchOne(
                db,
                sql: "SELECT detail FROM reports WHERE host_id = ? AND stage = 'failed' AND id > ? ORDER BY id DESC LIMIT 1",
                arguments: [host.id, host.reportFloor(for: .failed)])
        }
        let creator = history.first { $0.fromState == nil }?.actor
        let context = EventContext(
            host: HostSnapshot(host), timeline: HostTimeline(createdAt: host.createdAt, events: history),
            requestedBy: creator == "engine" ? nil : creator, failureLog: failureLog)
        let plan = SlackPlanner.plan(event, context: context, bot: channel != nil)
        if let parent = plan.parent, let channel {
            let text = try JSONValue.encoder.encode(parent)
            try db.execute(
                sql: """
                    INSERT INTO slack_threads (host_id, channel, event_id, parent, changed_at, created_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (host_id) DO UPDATE SET parent = excluded.parent, version = version + 1,
                      changed_at = excluded.changed_at
                    WHERE parent <> excluded.parent
                    """,
                arguments: [host.id, channel, eventID, String(decoding: text, as: UTF8.self), eventID, now])
        }
        for message in plan.messages {
            guard let key = message.key else { continue }
            try db.execute(
                sql: """
                    INSERT INTO slack_outbox (host_id, event_id, key, message, created_at) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (key) DO NOTHING
                    """,
                arguments: [host.id, eventID, key, String(decoding: try JSONValue.encoder.encode(message), as: UTF8.self), now])
        }
    }

    // MARK: What to send next

    /// The next thing to post. Messages owed in threads that are open (or, in webhook mode, at all)
    /// come first, oldest first: a host's ready or failure is not kept waiting behind the openings
    /// of other hosts' threads. Then the thread openings, those with a message waiting behind them
    /// first. A host's own messages always go in order, after its thread's parent.
    func nextPost(bot: Bool) throws -> PostWork? {
        try pool.read { db in
            let message = try OutboxRow.fetchOne(
                db,
                sql: """
                    SELECT o.* FROM slack_outbox o
                    \(bot ? "JOIN slack_threads t ON t.host_id = o.host_id AND t.state IN ('posted','frozen','dropped')" : "")
                    WHERE o.state IN ('queued','sending')
                      AND o.id = (SELECT MIN(id) FROM slack_outbox WHERE host_id = o.host_id AND state IN ('queued','sending'))
                    ORDER BY o.id LIMIT 1
                    """)
            if let message { return .message(message, threadTS: try Self.threadTS(db, message.hostID)) }
            guard bot else { return nil }
            let thread = try ThreadRow.fetchOne(
                db,
                sql: """
                    SELECT t.* FROM slack_threads t WHERE t.state IN ('queued','sending')
                    ORDER BY EXISTS (
                        SELECT 1 FROM slack_outbox o WHERE o.host_id = t.host_id AND o.state IN ('queued','sending')) DESC,
                      t.event_id
                    LIMIT 1
                    """)
            return thread.map { .parent($0) }
        }
    }

    private static func threadTS(_ db: Database, _ hostID: String) throws -> String? {
        try String.fetchOne(
            db, sql: "SELECT ts FROM slack_threads WHERE host_id = ? AND state IN ('posted','frozen')", arguments: [hostID])
    }

    /// The posted parent whose latest change Slack does not show yet, oldest change first.
    func nextUpdate() throws -> ThreadRow? {
        try pool.read { db in
            try ThreadRow.fetchOne(
                db, sql: "SELECT * FROM slack_threads WHERE state = 'posted' AND shown < version ORDER BY changed_at LIMIT 1")
        }
    }

    // MARK: Recording sends (intent before the request, result after)

    func markSending(_ work: PostWork) throws {
        try pool.write { db in
            switch work {
            case .parent(let thread):
                try db.execute(
                    sql: "UPDATE slack_threads SET state = 'sending', sends = sends + 1 WHERE host_id = ?", arguments: [thread.hostID])
            case .message(let row, _):
                try db.execute(sql: "UPDATE slack_outbox SET state = 'sending', sends = sends + 1 WHERE id = ?", arguments: [row.id])
            }
        }
    }

    /// Posted (or found posted): the parent's `shown` becomes the version that was sent.
    func markPosted(_ work: PostWork, ts: String?, now: Date) throws {
        try pool.write { db in
            switch work {
            case .parent(let thread):
                try db.execute(
                    sql: "UPDATE slack_threads SET state = 'posted', ts = ?, shown = ? WHERE host_id = ?",
                    arguments: [ts, thread.version, thread.hostID])
            case .message(let row, _):
                try db.execute(
                    sql: "UPDATE slack_outbox SET state = 'sent', ts = ?, sent_at = ?, note = NULL WHERE id = ?",
                    arguments: [ts, now, row.id])
            }
        }
    }

    /// Not posted, certainly: back to the queue with the reason.
    func markQueued(_ work: PostWork, note: String) throws {
        try pool.write { db in
            switch work {
            case .parent(let thread):
                try db.execute(
                    sql: "UPDATE slack_threads SET state = 'queued', sends = MAX(sends - 1, 0), note = ? WHERE host_id = ?",
                    arguments: [note, thread.hostID])
            case .message(let row, _):
                try db.execute(
                    sql: "UPDATE slack_outbox SET state = 'queued', sends = MAX(sends - 1, 0), note = ? WHERE id = ?",
                    arguments: [note, row.id])
            }
        }
    }

    /// May have been posted: stays `sending` (the next try looks first), with the reason.
    func markUncertain(_ work: PostWork, note: String) throws {
        try pool.write { db in
            switch work {
            case .parent(let thread):
                try db.execute(sql: "UPDATE slack_threads SET note = ? WHERE host_id = ?", arguments: [note, thread.hostID])
            case .message(let row, _):
                try db.execute(sql: "UPDATE slack_outbox SET note = ? WHERE id = ?", arguments: [note, row.id])
            }
        }
    }

    /// Never to be sent: Slack refused it for good, or a webhook may already have delivered it twice.
    func markDropped(_ work: PostWork, note: String) throws {
        try pool.write { db in
            switch work {
            case .parent(let thread):
                try db.execute(
                    sql: "UPDATE slack_threads SET state = 'dropped', note = ? WHERE host_id = ?", arguments: [note, thread.hostID])
            case .message(let row, _):
                try db.execute(sql: "UPDATE slack_outbox SET state = 'dropped', note = ? WHERE id = ?", arguments: [note, row.id])
            }
        }
    }

    func markShown(_ thread: ThreadRow) throws {
        try pool.write { db in
            try db.execute(
                sql: "UPDATE slack_threads SET shown = MAX(shown, ?) WHERE host_id = ?", arguments: [thread.version, thread.hostID])
        }
    }

    func markFrozen(_ thread: ThreadRow, note: String) throws {
        try pool.write { db in
            try db.execute(
                sql: "UPDATE slack_threads SET state = 'frozen', note = ? WHERE host_id = ?", arguments: [note, thread.hostID])
        }
    }

    // MARK: Status

    func announcements(hostID: String) throws -> HostAnnouncements {
        try pool.read { db in
            let thread = try ThreadRow.fetchOne(db, sql: "SELECT * FROM slack_threads WHERE host_id = ?", arguments: [hostID])
            let owed =
                try Int.fetchOne(
                    db, sql: "SELECT COUNT(*) FROM slack_outbox WHERE host_id = ? AND state IN ('queued','sending')", arguments: [hostID])
                ?? 0
            let sent =
                try Int.fetchOne(
                    db, sql: "SELECT COUNT(*) FROM slack_outbox WHERE host_id = ? AND state = 'sent'", arguments: [hostID]) ?? 0
            let dropped = try String.fetchAll(
                db, sql: "SELECT note FROM slack_outbox WHERE host_id = ? AND state = 'dropped' ORDER BY id", arguments: [hostID]
            ).compactMap { $0 }
            let parentOwed = thread.map { ["queued", "sending"].contains($0.state) } ?? false
            return HostAnnouncements(
                owed: owed + (parentOwed ? 1 : 0), sent: sent, dropped: dropped, threadTS: thread?.ts,
                threadNote: thread.flatMap { ["dropped", "frozen"].contains($0.state) ? $0.note : nil })
        }
    }

    // MARK: Chatops

    /// Records a refused chatops request in the host's events, like a command: the state does not
    /// change (`from` = `to`), the actor is the Slack user.
    func recordRefusal(hostID: String, reason: String, actor: String, now: Date) throws {
        try pool.write { db in
            guard let host = try HostRecord.fetchOne(db, sql: "SELECT * FROM hosts WHERE id = ?", arguments: [hostID]) else { return }
            let state = host.hostState
            try db.execute(
                sql: "INSERT INTO events (host_id, at, from_state, to_state, step, reason, actor) VALUES (?, ?, ?, ?, ?, ?, ?)",
                arguments: [hostID, now, state.description, state.description, state.step, reason, actor])
        }
    }

    /// True the first time a request signature is seen within `window`; false for a replay.
    func firstSighting(of signature: String, now: Date, window: Duration) throws -> Bool {
        try pool.write { db in
            try db.execute(
                sql: "DELETE FROM slack_requests_seen WHERE seen_at < ?", arguments: [now.addingTimeInterval(-2 * window.seconds)])
            try db.execute(
                sql: "INSERT INTO slack_requests_seen (signature, seen_at) VALUES (?, ?) ON CONFLICT (signature) DO NOTHING",
                arguments: [signature, now])
            return db.changesCount == 1
        }
    }
}

/// A thing to post: a thread's parent, or an owed message (with its thread, if any).
enum PostWork: Sendable, Equatable {
    case parent(ThreadRow)
    case message(OutboxRow, threadTS: String?)

    var sends: Int {
        switch self {
        case .parent(let thread): thread.sends
        case .message(let row, _): row.sends
        }
    }

    var mayHaveBeenSent: Bool {
        switch self {
        case .parent(let thread): thread.state == "sending"
        case .message(let row, _): row.state == "sending"
        }
    }

    var hostID: String {
        switch self {
        case .parent(let thread): thread.hostID
        case .message(let row, _): row.hostID
        }
    }
}

struct ThreadRow: Sendable, Equatable, Codable, FetchableRecord {
    var hostID: String
    var channel: String
    var eventID: Int64
    var state: String
    var sends: Int
    var ts: String?
    var parent: String
    var version: Int
    var shown: Int
    var changedAt: Int64
    var note: String?
    var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case channel, state, sends, ts, parent, version, shown, note
        case hostID = "host_id"
        case eventID = "event_id"
        case changedAt = "changed_at"
        case createdAt = "created_at"
    }

    var message: SlackMessage? { try? JSONDecoder().decode(SlackMessage.self, from: Data(parent.utf8)) }
}

struct OutboxRow: Sendable, Equatable, Codable, FetchableRecord {
    var id: Int64
    var hostID: String
    var eventID: Int64
    var key: String
    var message: String
    var state: String
    var sends: Int
    var ts: String?
    var note: String?
    var createdAt: Date
    var sentAt: Date?

    enum CodingKeys: String, CodingKey {
        case id, key, message, state, sends, ts, note
        case hostID = "host_id"
        case eventID = "event_id"
        case createdAt = "created_at"
        case sentAt = "sent_at"
    }

    var decoded: SlackMessage? { try? JSONDecoder().decode(SlackMessage.self, from: Data(message.utf8)) }
}

/// A host's announcements as `onetouch status` shows them.
public struct HostAnnouncements: Sendable, Codable, Equatable {
    /// Messages not yet in Slack (the parent counts).
    public var owed: Int
    public var sent: Int
    /// Why messages were given up on.
    public var dropped: [String]
    /// The thread's parent message (bot mode).
    public var threadTS: String?
    /// Why the thread's parent could not be posted or edited.
    public var threadNote: String?
}

/// Slack cannot be set up as configured.
public struct SlackSetupError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
