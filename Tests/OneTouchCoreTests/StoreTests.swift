import Foundation
import GRDB
import Testing

@testable import OneTouchCore

@Suite("Store and migrations")
struct StoreTests {
    func temporaryPath() -> String {
        NSTemporaryDirectory() + "onetouch-store-\(UUID().uuidString).sqlite"
    }

    @Test func migrationsCreateEverySchemaTableOnAnEmptyDatabase() throws {
        let store = try Store(path: temporaryPath())
        let tables = try store.pool.read { db in
            try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        }
        for table in ["hosts", "step_attempts", "events", "reports", "secrets", "leases", "grdb_migrations"] {
            #expect(tables.contains(table), "missing table \(table)")
        }
        let applied = try store.pool.read { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") }
        #expect(applied == Migrations.all.map(\.id))
    }

    @Test func databaseOpensInWALWithFullSync() throws {
        let store = try Store(path: temporaryPath())
        // The writer commits, so it is the connection whose setting counts; readers get it too.
        let (mode, writerSync) = try store.pool.writeWithoutTransaction { db in
            (try String.fetchOne(db, sql: "PRAGMA journal_mode"), try Int.fetchOne(db, sql: "PRAGMA synchronous"))
        }
        let readerSync = try store.pool.read { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }
        #expect(mode == "wal")
        #expect(writerSync == 2)  // FULL
        #expect(readerSync == 2)
    }

    @Test func aDatabaseFromEveryEarlierMigrationUpgradesCleanly() throws {
        for (index, migration) in Migrations.all.enumerated() {
            let path = temporaryPath()
            let queue = try DatabaseQueue(path: path)
            try Migrations.migrator(upTo: migration.id).migrate(queue)
            let count = try queue.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM grdb_migrations") }
            #expect(count == index + 1)
            // A host with its history, written in the schema of version 1 (every later version keeps it).
            try queue.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO hosts (id, name, role, spec, state, created_at, updated_at)
                        VALUES ('h-1', 'web-01', 'web', '{}', 'pending', '2026-11-27 10:00:00.000', '2026-11-27 10:00:00.000');
                        INSERT INTO events (host_id, at, to_state, reason, actor)
                        VALUES ('h-1', '2026-11-27 10:00:00.000', 'pending', 'created', 'test');
                        """)
            }
            try queue.close()
            let store = try Store(path: path)
            let applied = try store.pool.read { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") }
            #expect(applied == Migrations.all.map(\.id))
            #expect(try store.host(id: "h-1")?.name == "web-01", "upgraded from \(migration.id)")
            #expect(try store.events(hostID: "h-1").map(\.reason) == ["created"], "upgraded from \(migration.id)")
        }
    }

    @Test func embeddedResourcesMatchTheFilesOnDisk() throws {
        // The binary carries migrations/ and templates/; `scripts/embed-resources` must have been run.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let migrationFiles = try FileManager.default.contentsOfDirectory(atPath: root.path + "/migrations")
            .filter { $0.hasSuffix(".sql") }.sorted()
        #expect(Migrations.all.map { $0.id + ".sql" } == migrationFiles)
        for migration in Migrations.all {
            let text = try String(contentsOfFile: root.path + "/migrations/\(migration.id).sql", encoding: .utf8)
            #expect(migration.sql == text, "run scripts/embed-resources: \(migration.id) is stale")
        }
        for (name, text) in EmbeddedResources.templates {
            #expect(
                try String(contentsOfFile: root.path + "/templates/\(name)", encoding: .utf8) == text,
                "run scripts/embed-resources: \(name) is stale")
        }
    }

    @Test func eventsAreAppendOnly() async throws {
        let store = try Store(path: temporaryPath())
        let spec = HostSpec(name: "web-01", fqdn: "web-01.x.test", role: "web", instanceType: "t3.small", volumeGiB: 1, playbook: "p")
        let host = try await store.createHost(id: "h-1", spec: spec, tokenHash: Data([1]), now: Date(), actor: "test")
        #expect(throws: DatabaseError.self) {
            try store.pool.write { db in try db.execute(sql: "UPDATE events SET reason = 'x' WHERE host_id = ?", arguments: [host.id]) }
        }
        #expect(throws: DatabaseError.self) {
            try store.pool.write { db in try db.execute(sql: "DELETE FROM events WHERE host_id = ?", arguments: [host.id]) }
        }
        // Nor does deleting the host by hand take its history with it.
        #expect(throws: DatabaseError.self) {
            try store.pool.write { db in try db.execute(sql: "DELETE FROM hosts WHERE id = ?", arguments: [host.id]) }
        }
        #expect(try store.events(hostID: host.id).count == 1)
    }

    @Test func aStaleUpdateIsRefused() async throws {
        let store = try Store(path: temporaryPath())
        let spec = HostSpec(name: "web-01", fqdn: "web-01.x.test", role: "web", instanceType: "t3.small", volumeGiB: 1, playbook: "p")
        let host = try await store.createHost(id: "h-1", spec: spec, tokenHash: Data([1]), now: Date(), actor: "test")
        var update = Store.HostUpdate()
        update.state = .running(.provision)
        try await store.update(host, update, now: Date())
        await #expect(throws: HostChanged.self) { try await store.update(host, update, now: Date()) }
    }

    @Test func secretIsServedUntilTheHostAcknowledgesItThenGone() async throws {
        let store = try Store(path: temporaryPath())
        let spec = HostSpec(name: "web-01", fqdn: "web-01.x.test", role: "web", instanceType: "t3.small", volumeGiB: 1, playbook: "p")
        _ = try await store.createHost(id: "h-1", spec: spec, tokenHash: Data([1]), now: Date(), actor: "test")
        #expect(try await store.deliverSecret(hostID: "h-1", kind: .oneTimePassword, now: Date()) == .notYet)
        try await store.putSecret(hostID: "h-1", kind: .oneTimePassword, sealed: Data([9, 9]), now: Date())
        #expect(try await store.deliverSecret(hostID: "h-1", kind: .oneTimePassword, now: Date()) == .delivered(Data([9, 9])))
        // The answer may have been lost: until the host's next report, it can fetch it again.
        try await store.recordReport(hostID: "h-1", stage: .booted, exitStatus: nil, detail: nil, now: Date())
        #expect(try await store.deliverSecret(hostID: "h-1", kind: .oneTimePassword, now: Date()) == .delivered(Data([9, 9])))
        try await store.recordReport(hostID: "h-1", stage: .volumeMounted, exitStatus: nil, detail: nil, now: Date())
        #expect(try await store.deliverSecret(hostID: "h-1", kind: .oneTimePassword, now: Date()) == .gone)
        #expect(try store.secret(hostID: "h-1", kind: .oneTimePassword)?.sealed == nil, "acknowledged means wiped")
    }
}

@Suite("Group commit")
struct GroupCommitTests {
    static func spec(_ name: String) -> HostSpec {
        HostSpec(name: name, fqdn: "\(name).x.test", role: "web", instanceType: "t3.small", volumeGiB: 1, playbook: "p")
    }

    @Test func concurrentWritesShareCommitsAndEachGetsItsOwnResult() async throws {
        let store = try Store(path: NSTemporaryDirectory() + "onetouch-group-\(UUID().uuidString).sqlite")
        let hosts = try await withThrowingTaskGroup(of: HostRecord.self) { group in
            for i in 1...64 {
                group.addTask {
                    try await store.createHost(id: "h-\(i)", spec: Self.spec("web-\(i)"), tokenHash: Data([1]), now: Date(), actor: "test")
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(Set(hosts.map { $0.id }) == Set((1...64).map { "h-\($0)" }))
        #expect(try store.hosts().count == 64)
        // Writes that queued while a commit was syncing went into the next one.
        #expect(store.commits < 64)
    }

    struct Refused: Error {}

    @Test func aWriteThatFailsIsRolledBackAloneAndTheOthersCommit() async throws {
        let store = try Store(path: NSTemporaryDirectory() + "onetouch-group-\(UUID().uuidString).sqlite")
        // Many at once so that they share transactions. Each odd write inserts its row and then
        // throws: its row must be rolled back, and the even writes around it committed.
        let outcomes = await withTaskGroup(of: (Int, Bool).self) { group in
            for i in 1...60 {
                group.addTask {
                    let ok: Void? = try? await store.write { db in
                        try db.execute(
                            sql: "INSERT INTO leases (name, owner, expires_at) VALUES (?, 'test', '2026-01-01 00:00:00.000')",
                            arguments: ["lease-\(i)"])
                        if i % 2 == 1 { throw Refused() }
                    }
                    return (i, ok != nil)
                }
            }
            return await group.reduce(into: [Int: Bool]()) { $0[$1.0] = $1.1 }
        }
        #expect(outcomes.filter { $0.value }.keys.sorted() == Array(stride(from: 2, through: 60, by: 2)))
        let names = try await store.pool.read { db in try String.fetchAll(db, sql: "SELECT name FROM leases") }
        #expect(Set(names) == Set(stride(from: 2, through: 60, by: 2).map { "lease-\($0)" }))
        #expect(store.commits < 30, "the writes shared commits")
    }
}

@Suite("Engine lease")
struct LeaseTests {
    @Test func aLiveHolderKeepsTheLeaseAndADeadOneIsTakenOver() async throws {
        let store = try Store(path: NSTemporaryDirectory() + "onetouch-lease-\(UUID().uuidString).sqlite")
        let now = Date()
        try await store.acquireLease("engine", owner: "box pid 1", ttl: .seconds(30), now: now)
        await #expect(throws: LeaseHeld.self) { try await store.acquireLease("engine", owner: "box pid 2", ttl: .seconds(30), now: now) }
        try await store.acquireLease("engine", owner: "box pid 2", ttl: .seconds(30), now: now, holderIsGone: { $0 == "box pid 1" })
        await #expect(throws: LeaseHeld.self) { try await store.acquireLease("engine", owner: "box pid 3", ttl: .seconds(30), now: now) }
        // An expired lease is free for anyone.
        try await store.acquireLease("engine", owner: "box pid 3", ttl: .seconds(30), now: now.addingTimeInterval(31))
    }
}

@Suite("Dates in the database")
struct SQLDateTests {
    @Test(arguments: [0, 1_800_000_000.123, 1_800_000_000.9999, 951_782_400.5, 4_102_444_799.999, -1.5, 1_709_164_800.001])
    func handFormattedDatesAreTheTextGRDBWrites(seconds: Double) {
        let date = Date(timeIntervalSince1970: seconds)
        #expect(SQLDate.format(date) == String.fromDatabaseValue(date.databaseValue))
    }
}

@Suite("Dates in the API")
struct APIDateTests {
    struct Stamp: Codable { var at: Date }

    @Test func timesKeepTheirMillisecondsSoStepDurationsShow() throws {
        let at = Date(timeIntervalSince1970: 1_795_000_000.25)
        let json = String(decoding: try APIDates.encoder().encode(Stamp(at: at)), as: UTF8.self)
        #expect(json == #"{"at":"2026-11-18T11:06:40.250Z"}"#)
        let back = try APIDates.decoder().decode(Stamp.self, from: Data(json.utf8))
        #expect(abs(back.at.timeIntervalSince(at)) < 0.001)
    }

    @Test func timesWithoutAFractionAreReadAndOthersRefused() throws {
        let whole = try APIDates.decoder().decode(Stamp.self, from: Data(#"{"at":"2026-11-27T17:00:48Z"}"#.utf8))
        #expect(whole.at == Date(timeIntervalSince1970: 1_795_798_848))
        #expect(throws: DecodingError.self) { try APIDates.decoder().decode(Stamp.self, from: Data(#"{"at":"yesterday"}"#.utf8)) }
    }
}
