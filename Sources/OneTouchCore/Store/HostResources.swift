import Foundation
import GRDB

/// Something a host made in the cloud or the directory, as the ledger (`host_resources`) keeps it.
public struct HostResource: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable, DatabaseValueConvertible {
        case instance
        case volume
        case directoryEntry = "directory-entry"
    }
    public var kind: Kind
    public var id: String
    public var generation: Int
    public var recordedAt: Date

    public init(kind: Kind, id: String, generation: Int, recordedAt: Date) {
        self.kind = kind
        self.id = id
        self.generation = generation
        self.recordedAt = recordedAt
    }

    /// What `facts` say the host made: its instance, its data volume, and its directory entry once
    /// pre-registration succeeded (named by the host's name).
    static func made(by facts: HostFacts, name: String) -> [(Kind, String)] {
        var made: [(Kind, String)] = []
        if let id = facts.instanceID { made.append((.instance, id)) }
        if let id = facts.volumeID { made.append((.volume, id)) }
        if facts.directoryBaseline != nil { made.append((.directoryEntry, name)) }
        return made
    }
}

extension Store {
    /// Adds what `facts` say the host made to the ledger (already known rows stay as they are). What
    /// the row's previous facts already named was recorded with them, so only new names cost a statement.
    static func record(_ facts: HostFacts, of host: HostRecord, generation: Int, now: Date, db: Database) throws {
        let made = HostResource.made(by: facts, name: host.name).filter { kind, id in
            kind == .directoryEntry ? !host.facts.contains("\"directoryBaseline\"") : !host.facts.contains("\"\(id)\"")
        }
        guard !made.isEmpty else { return }
        let statement = try db.cachedStatement(
            sql: """
                INSERT INTO host_resources (host_id, kind, resource_id, generation, recorded_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT DO NOTHING
                """)
        for (kind, id) in made {
            try statement.execute(arguments: [host.id, kind, id, generation, SQLDate(now)])
        }
    }

    /// Keeps what a step's result says the host made when that result could not be committed because
    /// the host moved meanwhile (a destroy or a retry while the step ran): teardown must still find it.
    public func recordResources(of host: HostRecord, facts: HostFacts, now: Date) async throws {
        guard !HostResource.made(by: facts, name: host.name).isEmpty else { return }
        try await write { db in
            try Self.record(facts, of: host, generation: host.generation, now: now, db: db)
        }
    }

    /// Everything the ledger holds for a host, oldest first.
    public func resources(hostID: String, kind: HostResource.Kind? = nil) throws -> [HostResource] {
        try read { db in
            var sql = "SELECT kind, resource_id, generation, recorded_at FROM host_resources WHERE host_id = ?"
            var arguments: StatementArguments = [hostID]
            if let kind {
                sql += " AND kind = ?"
                arguments += [kind]
            }
            return try Row.fetchAll(db, sql: sql + " ORDER BY recorded_at, resource_id", arguments: arguments).map { row in
                HostResource(
                    kind: row["kind"], id: row["resource_id"], generation: row["generation"],
                    recordedAt: (row["recorded_at"] as SQLDate).date)
            }
        }
    }
}
