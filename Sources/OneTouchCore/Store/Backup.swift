import Foundation
import GRDB

#if canImport(Glibc)
    import Glibc
#endif

/// `onetouch backup`: an online, consistent copy of the database, taken while `serve` runs.
///
/// `VACUUM INTO` reads one snapshot (WAL mode: `serve` goes on writing meanwhile) and writes a compact
/// copy. The copy is made mode 0600 before SQLite writes into it (it holds sealed secrets and token
/// hashes), is never written over, and is checked (`PRAGMA integrity_check`) before it counts as made.
public enum DatabaseBackup {
    public struct Summary: Sendable, Equatable {
        public var hosts: Int
        public var migrations: [String]
        public var bytes: Int
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Copies the database at `database` to `file`, which must not exist.
    public static func copy(database: String, to file: String) throws -> Summary {
        guard FileManager.default.fileExists(atPath: database) else {
            throw Failure(description: "there is no database at \(database): check `database` in the configuration")
        }
        // O_EXCL: never write over an earlier backup; 0600 from the first byte.
        let fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            throw Failure(
                description: errno == EEXIST
                    ? "\(file) exists already; backups are never written over: choose another name"
                    : "cannot create \(file): \(reason)")
        }
        close(fd)
        do {
            var configuration = GRDB.Configuration()
            configuration.readonly = true
            configuration.busyMode = .timeout(10)
            let source = try DatabaseQueue(path: database, configuration: configuration)
            try source.inDatabase { db in try db.execute(sql: "VACUUM INTO ?", arguments: [file]) }
            try source.close()
            let copy = try DatabaseQueue(path: file, configuration: configuration)
            defer { try? copy.close() }
            return try copy.inDatabase { db in
                let check = try String.fetchAll(db, sql: "PRAGMA integrity_check")
                guard check == ["ok"] else {
                    let problems = check.prefix(3).joined(separator: "; ")
                    throw Failure(description: "the copy in \(file) fails SQLite's integrity check: \(problems)")
                }
                let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
                return Summary(
                    hosts: try Int.fetchOne(db, sql: "SELECT count(*) FROM hosts") ?? 0,
                    migrations: try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY identifier"),
                    bytes: size)
            }
        } catch {
            try? FileManager.default.removeItem(atPath: file)
            if let failure = error as? Failure { throw failure }
            throw Failure(description: "cannot copy \(database) to \(file): \(error)")
        }
    }
}
