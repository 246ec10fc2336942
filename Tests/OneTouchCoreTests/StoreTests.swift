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
        let (mode, sync) = try store.pool.read { db in
            (try String.fetchOne(db, sql: "PRAGMA journal_mode"), try Int.fetchOne(db, sql: "PRAGMA synchronous"))
        }
        #expect(mode == "wal")
        #expect(sync == 2)  // FULL
    }

    @Test func aDatabaseFromEveryEarlierMigrationUpgradesCleanly() throws {
        for (index, migration) in Migrations.all.enumerated() {
            let path = temporaryPath()
            let queue = try DatabaseQueue(path: path)
            try Migrations.migrator(upTo: migration.id).migrate(queue)
            let count = try queue.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM grdb_migrations") }
            #expect(count == index + 1)
            try queue.close()
            let store = try Store(path: path)
            let applied = try store.pool.read { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") }
            #expect(applied == Migrations.all.map(\.id))
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

    @Test func eventsAreAppendOnly() throws {
        let store = try Store(path: temporaryPath())
        let spec = HostSpec(name: "web-01", fqdn: "web-01.x.test", role: "web", instanceType: "t3.small", volumeGiB: 1, playbook: "p")
        let host = try store.createHost(id: "h-1", spec: spec, tokenHash: Data([1]), now: Date(), actor: "test")
        #expect(throws: DatabaseError.self) {
            try store.pool.write { db in try db.execute(sql: "UPDATE events SET reason = 'x' WHERE host_id = ?", arguments: [host.id]) }
        }
    }

    @Test func aStaleUpdateIsRefused() throws {
        let store = try Store(path: temporaryPath())
        let spec = HostSpec(name: "web-01", fqdn: "web-01.x.test", role: "web", instanceType: "t3.small", volumeGiB: 1, playbook: "p")
        let host = try store.createHost(id: "h-1", spec: spec, tokenHash: Data([1]), now: Date(), actor: "test")
        var update = Store.HostUpdate()
        update.state = .running(.provision)
        try store.update(host, update, now: Date())
        #expect(throws: HostChanged.self) { try store.update(host, update, now: Date()) }
    }

    @Test func secretIsServedUntilTheHostAcknowledgesItThenGone() throws {
        let store = try Store(path: temporaryPath())
        let spec = HostSpec(name: "web-01", fqdn: "web-01.x.test", role: "web", instanceType: "t3.small", volumeGiB: 1, playbook: "p")
        _ = try store.createHost(id: "h-1", spec: spec, tokenHash: Data([1]), now: Date(), actor: "test")
        #expect(try store.deliverSecret(hostID: "h-1", kind: .oneTimePassword, now: Date()) == .notYet)
        try store.putSecret(hostID: "h-1", kind: .oneTimePassword, sealed: Data([9, 9]), now: Date())
        #expect(try store.deliverSecret(hostID: "h-1", kind: .oneTimePassword, now: Date()) == .delivered(Data([9, 9])))
        // The answer may have been lost: until the host's next report, it can fetch it again.
        try store.recordReport(hostID: "h-1", stage: .booted, exitStatus: nil, detail: nil, now: Date())
        #expect(try store.deliverSecret(hostID: "h-1", kind: .oneTimePassword, now: Date()) == .delivered(Data([9, 9])))
        try store.recordReport(hostID: "h-1", stage: .volumeMounted, exitStatus: nil, detail: nil, now: Date())
        #expect(try store.deliverSecret(hostID: "h-1", kind: .oneTimePassword, now: Date()) == .gone)
        #expect(try store.secret(hostID: "h-1", kind: .oneTimePassword)?.sealed == nil, "acknowledged means wiped")
    }
}

@Suite("Engine lease")
struct LeaseTests {
    @Test func aLiveHolderKeepsTheLeaseAndADeadOneIsTakenOver() throws {
        let store = try Store(path: NSTemporaryDirectory() + "onetouch-lease-\(UUID().uuidString).sqlite")
        let now = Date()
        try store.acquireLease("engine", owner: "box pid 1", ttl: .seconds(30), now: now)
        #expect(throws: LeaseHeld.self) { try store.acquireLease("engine", owner: "box pid 2", ttl: .seconds(30), now: now) }
        try store.acquireLease("engine", owner: "box pid 2", ttl: .seconds(30), now: now, holderIsGone: { $0 == "box pid 1" })
        #expect(throws: LeaseHeld.self) { try store.acquireLease("engine", owner: "box pid 3", ttl: .seconds(30), now: now) }
        // An expired lease is free for anyone.
        try store.acquireLease("engine", owner: "box pid 3", ttl: .seconds(30), now: now.addingTimeInterval(31))
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
