import Foundation
import GRDB

/// A host's drift as `onetouch drift` lists it.
public struct DriftView: Sendable, Codable, Equatable {
    public struct Run: Sendable, Codable, Equatable {
        public var at: Date
        public var commit: String?
        public var exitStatus: Int
        public var checkMode: Bool
        public var recap: ConfigRunReport.Recap?
        public var changedTasks: [String]
        public var failedTasks: [ConfigRunReport.FailedTask]
        public var durationSeconds: Double?
        public var outputTail: String?
    }
    public var name: String
    public var id: String
    public var role: String
    /// nil: no configuration run reported yet.
    public var drift: DriftState?
    /// When the state began; nil for a host that never got a report credential (set up by a version
    /// of onetouch before drift reporting: it cannot report until it is provisioned again).
    public var since: Date?
    public var lastReportAt: Date?
    public var lastRun: Run?
    /// The latest `onetouch check` run: what would change.
    public var lastCheck: Run?
    public var checkRequested: Bool
    /// Differences between the host's cloud resources and what is declared, from the latest look.
    public var cloud: [CloudDifference]
}

/// What recording a run did.
public struct RunRecorded: Sendable, Equatable {
    public var state: DriftState?
    /// The transition is announced (an event was written).
    public var announce: Bool
    /// The host is asked to run its next pull in check mode.
    public var checkRequested: Bool
}

extension Store {
    // MARK: Report credentials

    /// Makes `hash` the host's only report credential (a new one on every call: a host being set up
    /// asks again after a lost answer) and starts its drift record.
    public func issueReportCredential(hostID: String, hash: Data, now: Date) async throws {
        try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO report_credentials (host_id, hash, next_hash, issued_at) VALUES (?, ?, NULL, ?)
                    ON CONFLICT (host_id) DO UPDATE SET hash = excluded.hash, next_hash = NULL, issued_at = excluded.issued_at
                    """, arguments: [hostID, hash, SQLDate(now)])
            try db.execute(
                sql: "INSERT INTO drift (host_id, since, last_report_at) VALUES (?, ?, ?) ON CONFLICT (host_id) DO NOTHING",
                arguments: [hostID, SQLDate(now), SQLDate(now)])
        }
    }

    public struct ReportCredential: Sendable {
        public var hash: Data
        public var nextHash: Data?
        public var issuedAt: Date
    }

    public func reportCredential(hostID: String) throws -> ReportCredential? {
        try read { db in
            try Row.fetchOne(
                db.cachedStatement(sql: "SELECT hash, next_hash, issued_at FROM report_credentials WHERE host_id = ?"),
                arguments: [hostID]
            ).map { ReportCredential(hash: $0["hash"], nextHash: $0["next_hash"], issuedAt: $0["issued_at"]) }
        }
    }

    /// Hands out `next` as the host's coming credential (the current one keeps working until it is used).
    public func offerReportCredential(hostID: String, next: Data) async throws {
        try await write { db in
            try db.execute(sql: "UPDATE report_credentials SET next_hash = ? WHERE host_id = ?", arguments: [next, hostID])
        }
    }

    /// The host presented its coming credential: it is the only one from now on.
    public func promoteReportCredential(hostID: String, now: Date) async throws {
        try await write { db in
            try db.execute(
                sql:
                    "UPDATE report_credentials SET hash = next_hash, next_hash = NULL, issued_at = ? WHERE host_id = ? AND next_hash IS NOT NULL",
                arguments: [SQLDate(now), hostID])
        }
    }

    /// Makes the host's credential due for rotation at its next report.
    public func expireReportCredential(hostID: String) async throws -> Bool {
        try await write { db in
            try db.execute(
                sql: "UPDATE report_credentials SET issued_at = ? WHERE host_id = ?",
                arguments: [SQLDate(Date(timeIntervalSince1970: 0)), hostID])
            return db.changesCount == 1
        }
    }

    /// Removes the host's report credential (destroy, a new machine): in the transaction that changes
    /// the host.
    static func revokeReportCredential(hostID: String, db: Database) throws {
        try db.cachedStatement(sql: "DELETE FROM report_credentials WHERE host_id = ?").execute(arguments: [hostID])
    }

    // MARK: Runs and drift states

    static func driftRecord(_ db: Database, hostID: String, now: Date) throws -> Drift.Record {
        if let row = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT state, run_state, problem, last_report_at FROM drift WHERE host_id = ?"),
            arguments: [hostID])
        {
            return Drift.Record(
                state: (row["state"] as String?).flatMap(DriftState.init), runState: (row["run_state"] as String?).flatMap(DriftState.init),
                problem: row["problem"], lastReportAt: row["last_report_at"])
        }
        try db.execute(
            sql: "INSERT INTO drift (host_id, since, last_report_at) VALUES (?, ?, ?)", arguments: [hostID, SQLDate(now), SQLDate(now)])
        return Drift.Record(state: nil, runState: nil, problem: false, lastReportAt: now)
    }

    static func saveDrift(_ db: Database, hostID: String, _ new: Drift.Record, now: Date) throws {
        try db.cachedStatement(
            sql: """
                UPDATE drift SET state = ?, run_state = ?, problem = ?, last_report_at = ?,
                  since = CASE WHEN state IS ? THEN since ELSE ? END
                WHERE host_id = ?
                """
        ).execute(
            arguments: [
                new.state?.rawValue, new.runState?.rawValue, new.problem, SQLDate(new.lastReportAt), new.state?.rawValue, SQLDate(now),
                hostID,
            ])
    }

    static func driftEvent(_ db: Database, hostID: String, reason: String, now: Date) throws {
        let ready = HostState.ready.description
        try insertEvent(db, hostID: hostID, at: now, from: ready, to: ready, step: nil, reason: reason, actor: Drift.actor)
    }

    /// Records a run and what it does to the host's drift state, with the transition's event, in one
    /// transaction. `reason` words the event for the state the run leads to. A host being set up
    /// (`announcing` false: its first run belongs to its config-pull step, which says how it went)
    /// gets its state but no event.
    public func recordRun(
        hostID: String, _ run: ConfigRunReport, now: Date, announcing: Bool = true,
        reason: @escaping @Sendable (DriftState) -> String
    ) async throws -> RunRecorded {
        try await write { db in
            try db.cachedStatement(
                sql: """
                    INSERT INTO config_runs (host_id, received_at, started_at, duration_seconds, config_commit, check_mode, exit_status,
                      ok, changed, unreachable, failed, skipped, changed_tasks, failed_tasks, output_tail)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(
                arguments: [
                    hostID, SQLDate(now), run.started.map(SQLDate.init), run.durationSeconds, run.commit, run.checkMode, run.exitStatus,
                    run.recap?.ok, run.recap?.changed, run.recap?.unreachable, run.recap?.failed, run.recap?.skipped,
                    JSON.encode(run.changedTasks), JSON.encode(run.failedTasks), run.outputTail,
                ])
            let runID = db.lastInsertedRowID
            let old = try Self.driftRecord(db, hostID: hostID, now: now)
            var (new, announce) = Drift.reported(old, run: run, now: now)
            if !announcing { (new.problem, announce) = (old.problem, false) }
            try Self.saveDrift(db, hostID: hostID, new, now: now)
            let requested =
                try Bool.fetchOne(
                    db.cachedStatement(
                        sql: run.checkMode
                            ? "UPDATE drift SET last_check_id = ?, check_requested = 0 WHERE host_id = ? RETURNING check_requested"
                            : "UPDATE drift SET last_run_id = ? WHERE host_id = ? RETURNING check_requested"),
                    arguments: [runID, hostID]) ?? false
            if announce, let state = new.state { try Self.driftEvent(db, hostID: hostID, reason: reason(state), now: now) }
            return RunRecorded(state: new.state, announce: announce, checkRequested: requested)
        }
    }

    /// Ready hosts whose last report is older than `before` and that are not silent yet: candidates
    /// for silence (each host's own deadline adds its splay).
    public func quietHosts(reportedBefore before: Date) throws -> [(id: String, name: String, lastReportAt: Date)] {
        try read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT h.id, h.name, d.last_report_at FROM drift d JOIN hosts h ON h.id = d.host_id
                    WHERE h.state = 'ready' AND (d.state IS NULL OR d.state <> 'silent') AND d.last_report_at < ?
                    """, arguments: [SQLDate(before)]
            ).map { ($0["id"], $0["name"], $0["last_report_at"]) }
        }
    }

    /// Marks a host silent if it still has not reported since `lastReportAt`; true when it did (and the
    /// transition's event was written).
    public func markSilent(hostID: String, lastReportAt: Date, reason: String, now: Date) async throws -> Bool {
        try await write { db in
            let old = try Self.driftRecord(db, hostID: hostID, now: now)
            guard old.lastReportAt == lastReportAt, old.state != .silent else { return false }
            let (new, announce) = Drift.moving(old, to: .silent)
            try Self.saveDrift(db, hostID: hostID, new, now: now)
            if announce { try Self.driftEvent(db, hostID: hostID, reason: reason, now: now) }
            return announce
        }
    }

    /// Asks these hosts to run their next pull in check mode; returns how many were asked.
    public func requestCheck(hostIDs: [String]) async throws -> Int {
        try await write { db in
            var count = 0
            for id in hostIDs {
                try db.execute(sql: "UPDATE drift SET check_requested = 1 WHERE host_id = ?", arguments: [id])
                count += db.changesCount
            }
            return count
        }
    }

    /// Every ready host's drift, by name.
    public func driftViews(hostID: String? = nil) throws -> [DriftView] {
        try read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT h.id, h.name, h.role, d.state, d.since, d.last_report_at, d.check_requested, d.last_run_id, d.last_check_id
                    FROM hosts h LEFT JOIN drift d ON d.host_id = h.id
                    WHERE h.state = 'ready' AND (? IS NULL OR h.id = ?) ORDER BY h.name
                    """, arguments: [hostID, hostID])
            let runStatement = try db.cachedStatement(sql: "SELECT * FROM config_runs WHERE id = ?")
            func run(_ id: Int64?) throws -> DriftView.Run? {
                guard let id, let row = try Row.fetchOne(runStatement, arguments: [id]) else { return nil }
                let ok: Int? = row["ok"]
                return DriftView.Run(
                    at: row["received_at"], commit: row["config_commit"], exitStatus: row["exit_status"], checkMode: row["check_mode"],
                    recap: ok.map {
                        ConfigRunReport.Recap(
                            ok: $0, changed: row["changed"], unreachable: row["unreachable"], failed: row["failed"], skipped: row["skipped"]
                        )
                    },
                    changedTasks: (try? JSON.decoder.decode([String].self, from: Data((row["changed_tasks"] as String).utf8))) ?? [],
                    failedTasks: (try? JSON.decoder.decode(
                        [ConfigRunReport.FailedTask].self, from: Data((row["failed_tasks"] as String).utf8)))
                        ?? [],
                    durationSeconds: row["duration_seconds"], outputTail: row["output_tail"])
            }
            let cloud = try Row.fetchAll(db, sql: "SELECT host_id, field, expected, actual FROM cloud_drift ORDER BY host_id, field")
            var differences: [String: [CloudDifference]] = [:]
            for row in cloud {
                differences[row["host_id"], default: []].append(
                    CloudDifference(field: row["field"], expected: row["expected"], actual: row["actual"]))
            }
            return try rows.map { row in
                let id: String = row["id"]
                return DriftView(
                    name: row["name"], id: id, role: row["role"], drift: (row["state"] as String?).flatMap(DriftState.init),
                    since: row["since"], lastReportAt: row["last_report_at"], lastRun: try run(row["last_run_id"]),
                    lastCheck: try run(row["last_check_id"]), checkRequested: row["check_requested"] ?? false,
                    cloud: differences[id] ?? [])
            }
        }
    }

    /// Hosts' drift states (of one host, with `hostID`), for filters and the status views.
    public func driftStates(hostID: String? = nil) throws -> [String: DriftState] {
        try read { db in
            var states: [String: DriftState] = [:]
            let rows = try Row.fetchAll(
                db, sql: "SELECT host_id, state FROM drift WHERE state IS NOT NULL AND (? IS NULL OR host_id = ?)",
                arguments: [hostID, hostID])
            for row in rows {
                if let state = DriftState(rawValue: row["state"]) { states[row["host_id"]] = state }
            }
            return states
        }
    }

    /// Ready hosts by drift state (`none`: no run reported yet), and cloud differences of ready hosts.
    public func driftCounts() throws -> (states: [String: Int], cloudDifferences: Int) {
        try read { db in
            var states: [String: Int] = [:]
            let rows = try Row.fetchAll(
                db,
                sql: "SELECT COALESCE(d.state, 'none') AS state, COUNT(*) AS n FROM drift d JOIN hosts h ON h.id = d.host_id "
                    + "WHERE h.state = 'ready' GROUP BY 1")
            for row in rows { states[row["state"]] = row["n"] }
            let cloud = try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM cloud_drift c JOIN hosts h ON h.id = c.host_id WHERE h.state = 'ready'")
            return (states, cloud ?? 0)
        }
    }

    // MARK: Cloud drift

    /// Replaces a host's cloud differences with `found`; writes an event for each that appeared and each
    /// that cleared, and returns them.
    public func recordCloudDrift(
        hostID: String, found: [CloudDifference], now: Date, reason: @escaping @Sendable (CloudDifference, Bool) -> String
    ) async throws -> (appeared: [CloudDifference], cleared: [CloudDifference]) {
        try await write { db in
            let known = try Row.fetchAll(db, sql: "SELECT field, expected, actual FROM cloud_drift WHERE host_id = ?", arguments: [hostID])
                .map { CloudDifference(field: $0["field"], expected: $0["expected"], actual: $0["actual"]) }
            let knownFields = Dictionary(known.map { ($0.field, $0) }, uniquingKeysWith: { a, _ in a })
            let foundFields = Set(found.map(\.field))
            let appeared = found.filter { knownFields[$0.field] == nil }
            let cleared = known.filter { !foundFields.contains($0.field) }
            for difference in found {
                try db.execute(
                    sql: """
                        INSERT INTO cloud_drift (host_id, field, expected, actual, since) VALUES (?, ?, ?, ?, ?)
                        ON CONFLICT (host_id, field) DO UPDATE SET expected = excluded.expected, actual = excluded.actual
                        """, arguments: [hostID, difference.field, difference.expected, difference.actual, SQLDate(now)])
            }
            for difference in cleared {
                try db.execute(sql: "DELETE FROM cloud_drift WHERE host_id = ? AND field = ?", arguments: [hostID, difference.field])
            }
            for difference in appeared { try Self.driftEvent(db, hostID: hostID, reason: reason(difference, true), now: now) }
            for difference in cleared { try Self.driftEvent(db, hostID: hostID, reason: reason(difference, false), now: now) }
            return (appeared, cleared)
        }
    }
}

extension Drift {
    /// The actor of drift events (Slack tells them apart by it).
    public static let actor = "drift"
}
