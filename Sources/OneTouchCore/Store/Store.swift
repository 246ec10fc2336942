import Foundation
import GRDB
import Synchronization

/// The database facade: one writer, named writes that keep the invariants.
///
/// SQLite in WAL mode with `synchronous=FULL` and a busy timeout. Every state change is written with
/// its event row in the same transaction.
public final class Store: Sendable {
    public let pool: DatabasePool
    private let groupCommit: GroupCommit
    /// The installation this database belongs to: every managed resource is tagged with it.
    public let installationID: String
    /// Commit latency and reports recorded, for `/metrics`.
    let telemetry: Telemetry

    /// Opens (creating if needed) the database at `path` and applies pending migrations. A new
    /// database is created mode 0600 (SQLite gives its -wal and -shm files the same mode); a failure
    /// names the path (`StoreOpenError`).
    public init(path: String, telemetry: Telemetry = Telemetry()) throws {
        self.telemetry = telemetry
        var configuration = GRDB.Configuration()
        configuration.busyMode = .timeout(10)
        configuration.foreignKeysEnabled = true
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            try StoreOpenError.createPrivately(path)
            pool = try DatabasePool(path: path, configuration: configuration)
            // GRDB turns the writer connection to `synchronous=NORMAL` when it enables WAL, after
            // `prepareDatabase` ran: set FULL again on the one connection that commits.
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
            try Migrations.migrator().migrate(pool)
        } catch let error as DatabaseError {
            throw StoreOpenError(path: path, error: error)
        }
        groupCommit = GroupCommit(writer: pool, telemetry: telemetry)
        installationID = try pool.read { db in try String.fetchOne(db, sql: "SELECT id FROM installation") } ?? "unknown"
    }

    /// Number of write transactions committed through this facade (for the benchmark).
    public var commits: Int { groupCommit.commits }

    /// Number of write transactions asked for that changed something; `commits` is smaller when
    /// writes shared a commit.
    public var writes: Int { groupCommit.writes }

    /// Runs `body` in a transaction shared with the writes queued meanwhile (see `GroupCommit`);
    /// returns once it is durable.
    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await groupCommit.write(body)
    }

    /// Runs `body` on a reader connection in autocommit mode: each statement sees the latest commit,
    /// with no snapshot held across statements. The reads here are of one statement, or of rows that
    /// only grow (reports), or are checked by the host row's version when written back (`claimStep`),
    /// so none needs one; the BEGIN and COMMIT around each read were a tenth of the engine's CPU.
    func read<T>(_ body: (Database) throws -> T) throws -> T {
        try pool.unsafeRead(body)
    }
}

// MARK: - Hosts

public struct HostNameTaken: Error, CustomStringConvertible {
    public let name: String
    public init(name: String) { self.name = name }
    public var description: String {
        "a host named \(name) already exists and is not destroyed; pick another name, or run `onetouch destroy \(name)` first"
    }
}

public struct HostChanged: Error, CustomStringConvertible {
    public let hostID: String
    public var description: String { "host \(hostID) was changed by someone else meanwhile; try again" }
}

public struct UnknownHost: Error, CustomStringConvertible {
    public let name: String
    public var description: String { "no host named \(name); `onetouch list` shows the hosts there are" }
}

extension Store {
    /// Inserts a new host in `pending` with its "created" event.
    public func createHost(
        id: String, spec: HostSpec, tokenHash: Data, now: Date, actor: String
    ) async throws -> HostRecord {
        let record = HostRecord(
            id: id, name: spec.name, role: spec.role, spec: JSON.encode(spec), state: .pending, step: nil, reason: nil,
            generation: 1, facts: "{}", tokenHash: tokenHash, reportFloor: 0, keepVolume: false, nextAt: now,
            version: 0, createdAt: now, updatedAt: now)
        do {
            return try await write { db in
                try record.insert(db)
                var event = EventRecord(
                    hostID: id, at: now, fromState: nil, toState: HostState.pending.description, step: nil,
                    reason: "created with role \(spec.role)", actor: actor)
                try event.insert(db)
                return record
            }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            throw HostNameTaken(name: spec.name)
        }
    }

    /// Whether any host was ever created here (their tokens and secrets depend on the master key).
    public func holdsHosts() throws -> Bool {
        try read { db in try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM hosts)") ?? false }
    }

    public func host(id: String) throws -> HostRecord? {
        try read { db in
            try HostRecord.fetchOne(try db.cachedStatement(sql: "SELECT * FROM hosts WHERE id = ?"), arguments: [id])
        }
    }

    /// The host with this name that is not destroyed, else the most recently destroyed one.
    public func host(named name: String) throws -> HostRecord? {
        try read { db in
            try HostRecord.fetchOne(
                db,
                sql: """
                    SELECT * FROM hosts WHERE name = ?
                    ORDER BY (state = 'destroyed'), created_at DESC LIMIT 1
                    """, arguments: [name])
        }
    }

    public func hosts(state: HostState.Kind? = nil) throws -> [HostRecord] {
        try read { db in
            if let state {
                return try HostRecord.fetchAll(db, sql: "SELECT * FROM hosts WHERE state = ? ORDER BY name", arguments: [state])
            }
            return try HostRecord.fetchAll(db, sql: "SELECT * FROM hosts ORDER BY name")
        }
    }

    /// Every host the engine should drive, with when it should act next.
    public func unfinishedHosts() throws -> [(id: String, nextAt: Date?, waiting: Bool)] {
        try read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT id, next_at, state FROM hosts
                    WHERE state IN ('pending','running','waiting','destroying') OR (state = 'paused' AND next_at IS NOT NULL)
                    """)
            return rows.map { (id: $0["id"], nextAt: $0["next_at"], waiting: $0["state"] == "waiting") }
        }
    }

    /// A change to one host, committed in one transaction with its event (if the state changes) and
    /// the attempt row it finishes (if any). Fails with `HostChanged` if the row moved meanwhile.
    public struct HostUpdate: Sendable {
        public var state: HostState?
        public var eventReason: String?
        public var actor: String = "engine"
        public var facts: HostFacts?
        public var nextAt: Date??
        public var generation: Int?
        public var reportFloor: Int64?
        public var keepVolume: Bool?
        public var revokeToken = false
        /// Wipe the host's one-time password in the same transaction (ready, failed, destroyed).
        public var wipeOneTimePassword = false
        public var tokenHash: Data?
        public var attempt: AttemptRecord?
        /// The intent of the step the host enters, committed with the change.
        public var newAttempt: NewAttempt?
        public init() {}

        /// The effects of a transition that are a matter of the host's row: the token and the password.
        /// (The others change facts, generation and report floors, which their caller knows.)
        public mutating func carryOut(_ effects: HostWorkflow.Effects) {
            revokeToken = revokeToken || effects.revokeHostToken
            wipeOneTimePassword = wipeOneTimePassword || effects.wipeOneTimePassword
        }

        /// The host's next generation: a new VM under a new launch key, a new host token, and every
        /// report so far stale. The caller decides which facts carry over.
        public mutating func startNextGeneration(of host: HostRecord, secrets: SecretBox, latestReportID: Int64) {
            let next = host.generation + 1
            generation = next
            tokenHash = SecretBox.tokenHash(secrets.hostToken(hostID: host.id, generation: next))
            reportFloor = latestReportID
        }
    }

    /// A step attempt to begin: its idempotency key and, for a waiting step, its deadline.
    public struct NewAttempt: Sendable {
        public var step: Step
        public var key: String
        public var deadline: Date?
        public init(step: Step, key: String, deadline: Date?) {
            self.step = step
            self.key = key
            self.deadline = deadline
        }
    }

    @discardableResult
    public func update(_ host: HostRecord, _ change: HostUpdate, now: Date) async throws -> HostRecord {
        try await advance(host, change, now: now).host
    }

    /// `update`, also returning the attempt it began (`change.newAttempt`).
    public func advance(_ host: HostRecord, _ change: HostUpdate, now: Date) async throws -> (host: HostRecord, attempt: AttemptRecord?) {
        try await write { db in
            let row = try Self.apply(change, to: host, now: now, db: db)
            guard let new = change.newAttempt else { return (row, nil) }
            let attempt = try Self.insertAttempt(
                db, hostID: host.id, step: new.step, generation: row.generation, key: new.key, deadline: new.deadline, now: now)
            return (row, attempt)
        }
    }

    static func apply(_ change: HostUpdate, to host: HostRecord, now: Date, db: Database) throws -> HostRecord {
        var row = host
        let from = host.hostState
        if let state = change.state {
            row.state = state.kind
            row.step = state.step
            row.reason = state.reason
        }
        if let facts = change.facts { row.facts = JSON.encode(facts) }
        if let nextAt = change.nextAt { row.nextAt = nextAt }
        if let generation = change.generation { row.generation = generation }
        if let floor = change.reportFloor { row.reportFloor = floor }
        if let keep = change.keepVolume { row.keepVolume = keep }
        if let hash = change.tokenHash { row.tokenHash = hash }
        if change.revokeToken { row.tokenHash = nil }
        row.version = host.version + 1
        row.updatedAt = now
        try db.cachedStatement(
            sql: """
                UPDATE hosts SET state = ?, step = ?, reason = ?, generation = ?, facts = ?, token_hash = ?,
                  report_floor = ?, keep_volume = ?, next_at = ?, version = ?, updated_at = ?
                WHERE id = ? AND version = ?
                """
        ).execute(
            arguments: [
                row.state, row.step, row.reason, row.generation, row.facts, row.tokenHash, row.reportFloor,
                row.keepVolume, row.nextAt.map(SQLDate.init), row.version, SQLDate(row.updatedAt), row.id, host.version,
            ])
        guard db.changesCount == 1 else { throw HostChanged(hostID: host.id) }
        if let facts = change.facts { try record(facts, of: host, generation: row.generation, now: now, db: db) }
        if change.generation != nil {
            // A new generation is a new machine: it starts unclaimed.
            try db.cachedStatement(sql: "UPDATE hosts SET claim_hash = NULL WHERE id = ?").execute(arguments: [host.id])
        }
        // The report credential belongs to one machine and a live host: a new machine gets its own, and
        // a host being destroyed reports nothing more.
        if change.generation != nil || (row.state != host.state && [.destroying, .destroyed].contains(row.state)) {
            try revokeReportCredential(hostID: host.id, db: db)
        }
        if let state = change.state, state != from || change.eventReason != nil {
            try insertEvent(
                db, hostID: host.id, at: now, from: from.description, to: state.description, step: state.step,
                reason: change.eventReason ?? "", actor: change.actor)
        }
        if let attempt = change.attempt {
            try db.cachedStatement(
                sql: """
                    UPDATE step_attempts SET finished_at = ?, deadline = ?, outcome = ?, error_class = ?, error_message = ?,
                      data = ?
                    WHERE id = ?
                    """
            ).execute(
                arguments: [
                    attempt.finishedAt.map(SQLDate.init), attempt.deadline.map(SQLDate.init), attempt.outcome, attempt.errorClass,
                    attempt.errorMessage,
                    attempt.data, attempt.id,
                ])
        }
        if change.wipeOneTimePassword {
            try db.cachedStatement(
                sql: "UPDATE secrets SET sealed = NULL, wiped_at = ? WHERE host_id = ? AND kind = ? AND wiped_at IS NULL"
            ).execute(arguments: [now, host.id, SecretRecord.Kind.oneTimePassword])
        }
        return row
    }
}

extension Store {
    /// One row of the append-only history, in the caller's transaction.
    static func insertEvent(
        _ db: Database, hostID: String, at: Date, from: String?, to: String, step: Step?, reason: String, actor: String
    ) throws {
        try db.cachedStatement(
            sql: "INSERT INTO events (host_id, at, from_state, to_state, step, reason, actor) VALUES (?, ?, ?, ?, ?, ?, ?)"
        ).execute(arguments: [hostID, SQLDate(at), from, to, step, reason, actor])
    }
}

// MARK: - Step attempts

extension Store {
    /// What a host's current step runs under: the unfinished attempt a crash or a waiting step left,
    /// or else a new one (`fresh`) committed here, before any external call, with the idempotency key
    /// and deadline `newAttempt` gives. `newAttempt` returns nil when the host runs no step now.
    /// A read when there is nothing to begin (the usual case: the engine begins most attempts with the
    /// transition into their step); else one write transaction that reads and inserts together.
    public func claimStep(
        hostID id: String, now: Date, newAttempt: @escaping @Sendable (HostRecord, Step) -> (key: String, deadline: Date?)?
    ) async throws -> (host: HostRecord, attempt: AttemptRecord?, fresh: Bool)? {
        let seen = try read { db -> (host: HostRecord, attempt: AttemptRecord?, fresh: Bool)?? in
            guard let host = try HostRecord.fetchOne(try db.cachedStatement(sql: "SELECT * FROM hosts WHERE id = ?"), arguments: [id])
            else { return .some(nil) }
            guard let step = host.step, newAttempt(host, step) != nil else { return (host, nil, false) }
            if let open = try Self.openAttempt(db, hostID: id, step: step, generation: host.generation) { return (host, open, false) }
            return nil  // an attempt to begin: in a write transaction
        }
        if let seen { return seen }
        return try await write { db in
            guard let host = try HostRecord.fetchOne(try db.cachedStatement(sql: "SELECT * FROM hosts WHERE id = ?"), arguments: [id])
            else { return nil }
            guard let step = host.step, let new = newAttempt(host, step) else { return (host, nil, false) }
            if let open = try Self.openAttempt(db, hostID: id, step: step, generation: host.generation) {
                return (host, open, false)
            }
            let attempt = try Self.insertAttempt(
                db, hostID: id, step: step, generation: host.generation, key: new.key, deadline: new.deadline, now: now)
            return (host, attempt, true)
        }
    }

    /// The unfinished attempt of a step in this generation, left by a crash or a waiting step.
    private static func openAttempt(_ db: Database, hostID: String, step: Step, generation: Int) throws -> AttemptRecord? {
        try AttemptRecord.fetchOne(
            try db.cachedStatement(
                sql: """
                    SELECT * FROM step_attempts
                    WHERE host_id = ? AND step = ? AND generation = ? AND finished_at IS NULL
                    ORDER BY attempt DESC LIMIT 1
                    """), arguments: [hostID, step, generation])
    }

    /// Attempts of a step in this generation so far, oldest first.
    public func attempts(hostID: String, step: Step? = nil, generation: Int? = nil) throws -> [AttemptRecord] {
        try read { db in
            var sql = "SELECT * FROM step_attempts WHERE host_id = ?"
            var arguments: StatementArguments = [hostID]
            if let step {
                sql += " AND step = ?"
                arguments += [step]
            }
            if let generation {
                sql += " AND generation = ?"
                arguments += [generation]
            }
            return try AttemptRecord.fetchAll(db, sql: sql + " ORDER BY id", arguments: arguments)
        }
    }

    /// Commits the intent to run a step, with its idempotency key, before the external call.
    private static func insertAttempt(
        _ db: Database, hostID: String, step: Step, generation: Int, key: String, deadline: Date?, now: Date
    ) throws -> AttemptRecord {
        let previous =
            try Int.fetchOne(
                try db.cachedStatement(
                    sql: "SELECT MAX(attempt) FROM step_attempts WHERE host_id = ? AND step = ? AND generation = ?"),
                arguments: [hostID, step, generation]) ?? 0
        var attempt = AttemptRecord(
            id: nil, hostID: hostID, step: step, generation: generation, attempt: previous + 1,
            idempotencyKey: key, startedAt: now, finishedAt: nil, deadline: deadline, outcome: nil,
            errorClass: nil, errorMessage: nil, data: "{}")
        try db.cachedStatement(
            sql: """
                INSERT INTO step_attempts (host_id, step, generation, attempt, idempotency_key, started_at, deadline, data)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(arguments: [hostID, step, generation, attempt.attempt, key, SQLDate(now), deadline.map(SQLDate.init), attempt.data])
        attempt.id = db.lastInsertedRowID
        return attempt
    }

    /// The first attempt of a step in this generation (for the step's time budget).
    public func firstAttemptStart(hostID: String, step: Step, generation: Int) throws -> Date? {
        try read { db in
            try Date.fetchOne(
                db,
                sql: "SELECT MIN(started_at) FROM step_attempts WHERE host_id = ? AND step = ? AND generation = ?",
                arguments: [hostID, step, generation])
        }
    }
}

// MARK: - Events

extension Store {
    public func events(hostID: String, after: Int64 = 0, limit: Int = 1000) throws -> [EventRecord] {
        try read { db in
            try EventRecord.fetchAll(
                db, sql: "SELECT * FROM events WHERE host_id = ? AND id > ? ORDER BY id LIMIT ?",
                arguments: [hostID, after, limit])
        }
    }
}

// MARK: - Reports

extension Store {
    @discardableResult
    public func recordReport(
        hostID: String, stage: ReportRecord.Stage, exitStatus: Int?, detail: String?, failedStage: ReportRecord.FailedStage? = nil,
        now: Date
    ) async throws -> ReportRecord {
        let recorded = try await write { db in
            var report = ReportRecord(
                id: nil, hostID: hostID, stage: stage, exitStatus: exitStatus, detail: detail, receivedAt: now,
                failedStage: failedStage)
            try report.insert(db)
            // A report after the one-time password was fetched acknowledges it: wipe it now.
            if stage != .booted {
                try db.cachedStatement(
                    sql: """
                        UPDATE secrets SET sealed = NULL, wiped_at = ?
                        WHERE host_id = ? AND kind = ? AND delivered_at IS NOT NULL AND wiped_at IS NULL
                        """
                ).execute(arguments: [now, hostID, SecretRecord.Kind.oneTimePassword])
            }
            return report
        }
        telemetry.reportRecorded(stage: stage.rawValue)
        return recorded
    }

    /// The latest report of `stage` newer than the host's report floor.
    public func latestReport(hostID: String, stage: ReportRecord.Stage, after floor: Int64) throws -> ReportRecord? {
        try latestReports(hostID: hostID, after: [stage: floor])[stage]
    }

    /// The latest report of each stage newer than its floor, in one read.
    public func latestReports(hostID: String, after floors: [ReportRecord.Stage: Int64]) throws -> [ReportRecord.Stage: ReportRecord] {
        try read { db in
            let statement = try db.cachedStatement(
                sql: "SELECT * FROM reports WHERE host_id = ? AND stage = ? AND id > ? ORDER BY id DESC LIMIT 1")
            var found: [ReportRecord.Stage: ReportRecord] = [:]
            for (stage, floor) in floors {
                found[stage] = try ReportRecord.fetchOne(statement, arguments: [hostID, stage, floor])
            }
            return found
        }
    }

    public func latestReportID(hostID: String) throws -> Int64 {
        try read { db in
            try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM reports WHERE host_id = ?", arguments: [hostID]) ?? 0
        }
    }
}

// MARK: - Secrets

extension Store {
    /// Stores a sealed secret, replacing one that was never delivered.
    public func putSecret(hostID: String, kind: SecretRecord.Kind, sealed: Data, now: Date) async throws {
        try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO secrets (host_id, kind, sealed, created_at) VALUES (?, ?, ?, ?)
                    ON CONFLICT (host_id, kind) DO UPDATE SET sealed = excluded.sealed, created_at = excluded.created_at,
                      delivered_at = NULL, wiped_at = NULL
                    """, arguments: [hostID, kind, sealed, now])
        }
    }

    public func secret(hostID: String, kind: SecretRecord.Kind) throws -> SecretRecord? {
        try read { db in
            try SecretRecord.fetchOne(
                try db.cachedStatement(sql: "SELECT * FROM secrets WHERE host_id = ? AND kind = ?"), arguments: [hostID, kind])
        }
    }

    public enum Delivery: Sendable, Equatable {
        case notYet
        case delivered(Data)
        case gone
    }

    /// Hands a secret out until the host acknowledges it (its next report, see `recordReport`): a
    /// response lost in a crash can be fetched again; once acknowledged or wiped it is gone.
    public func deliverSecret(hostID: String, kind: SecretRecord.Kind, now: Date) async throws -> Delivery {
        try await write { db in
            guard
                let row = try SecretRecord.fetchOne(
                    db, sql: "SELECT * FROM secrets WHERE host_id = ? AND kind = ?", arguments: [hostID, kind])
            else { return .notYet }
            guard row.wipedAt == nil, let sealed = row.sealed else { return .gone }
            if row.deliveredAt == nil {
                try db.execute(
                    sql: "UPDATE secrets SET delivered_at = ? WHERE host_id = ? AND kind = ?", arguments: [now, hostID, kind])
            }
            return .delivered(sealed)
        }
    }

}

// MARK: - Claims

extension Store {
    public enum Claim: Sendable, Equatable {
        /// This call bound the host to the claim.
        case bound
        /// The claim is the one bound before.
        case matches
        /// Another claim is bound.
        case other
    }

    /// Binds the host's current generation to a claim (stored as its SHA-256) if none is bound,
    /// atomically: of two machines presenting different claims at once, exactly one is `bound`.
    public func bindClaim(hostID: String, generation: Int, claim: Secret) async throws -> Claim {
        // The usual case, a host's own later calls, reads only.
        let seen = try read { db in try Data.fetchOne(db, sql: "SELECT claim_hash FROM hosts WHERE id = ?", arguments: [hostID]) }
        if let seen { return SecretBox.tokenMatches(claim.reveal(), hash: seen) ? .matches : .other }
        return try await write { db in
            try db.execute(
                sql: "UPDATE hosts SET claim_hash = ? WHERE id = ? AND generation = ? AND claim_hash IS NULL",
                arguments: [SecretBox.tokenHash(claim), hostID, generation])
            if db.changesCount == 1 { return .bound }
            let bound = try Data.fetchOne(db, sql: "SELECT claim_hash FROM hosts WHERE id = ?", arguments: [hostID])
            return bound.map { SecretBox.tokenMatches(claim.reveal(), hash: $0) } == true ? .matches : .other
        }
    }
}

// MARK: - Leases

public struct LeaseHeld: Error, CustomStringConvertible {
    public let owner: String
    public let expiresAt: Date
    public var description: String {
        "another `onetouch serve` (\(owner)) is driving the hosts in this database until \(expiresAt) unless it stops; "
            + "stop that process first, or point this one at another database"
    }
}

extension Store {
    /// Takes or renews the named lease for `owner` until `now + ttl`. Throws `LeaseHeld` while another
    /// owner holds an unexpired lease.
    /// `holderIsGone` may declare an unexpired lease abandoned (its process died on this machine).
    public func acquireLease(
        _ name: String, owner: String, ttl: Duration, now: Date, holderIsGone: @escaping @Sendable (String) -> Bool = { _ in false }
    ) async throws {
        try await write { db in
            if let row = try Row.fetchOne(db, sql: "SELECT owner, expires_at FROM leases WHERE name = ?", arguments: [name]) {
                let holder: String = row["owner"]
                let expires: Date = row["expires_at"]
                if holder != owner && expires > now && !holderIsGone(holder) {
                    throw LeaseHeld(owner: holder, expiresAt: expires)
                }
            }
            try db.execute(
                sql: """
                    INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)
                    ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
                    """, arguments: [name, owner, now.addingTimeInterval(ttl.seconds)])
        }
    }

    /// What the status page shows: every host not destroyed with the attempts of its generation, the
    /// count of hosts by state and step, and the latest events with their host's name, newest first.
    public struct StatusSnapshot: Sendable {
        public var hosts: [HostRecord]
        public var attempts: [AttemptRecord]
        public var counts: [(state: String, step: String, count: Int)]
        public var events: [(EventRecord, String)]
        /// Ready hosts' configuration drift, by host id.
        public var drift: [String: DriftState] = [:]
    }

    public func statusSnapshot(events limit: Int) throws -> StatusSnapshot {
        let counts = try hostCounts()
        let drift = try driftStates()
        return try read { db in
            let hosts = try HostRecord.fetchAll(db, sql: "SELECT * FROM hosts WHERE state <> 'destroyed' ORDER BY name")
            let attempts = try AttemptRecord.fetchAll(
                db,
                sql: """
                    SELECT a.* FROM step_attempts a JOIN hosts h ON h.id = a.host_id AND a.generation = h.generation
                    WHERE h.state <> 'destroyed' ORDER BY a.id
                    """)
            let events = try Row.fetchAll(
                db, sql: "SELECT e.*, h.name AS host_name FROM events e JOIN hosts h ON h.id = e.host_id ORDER BY e.id DESC LIMIT ?",
                arguments: [limit]
            ).map { (try EventRecord(row: $0), $0["host_name"] as String) }
            return StatusSnapshot(hosts: hosts, attempts: attempts, counts: counts, events: events, drift: drift)
        }
    }

    /// How many hosts are in each state and step (step "" for none), for `/metrics`.
    public func hostCounts() throws -> [(state: String, step: String, count: Int)] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT state, COALESCE(step, '') AS step, count(*) AS n FROM hosts GROUP BY 1, 2").map {
                ($0["state"], $0["step"], $0["n"])
            }
        }
    }

    /// Who holds the named lease and until when, or nil when no one does.
    public func lease(_ name: String) throws -> (owner: String, expiresAt: Date)? {
        try read { db in
            try Row.fetchOne(db, sql: "SELECT owner, expires_at FROM leases WHERE name = ?", arguments: [name]).map {
                ($0["owner"], $0["expires_at"])
            }
        }
    }

    /// Writes the readiness probe's row: throws what a step's commit would meet (read-only, full).
    public func probeWrite(now: Date) async throws {
        try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO write_probe (id, written_at) VALUES (1, ?)
                    ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at
                    """, arguments: [now])
        }
    }

    public func releaseLease(_ name: String, owner: String) async throws {
        try await write { db in
            try db.execute(sql: "DELETE FROM leases WHERE name = ? AND owner = ?", arguments: [name, owner])
        }
    }
}
