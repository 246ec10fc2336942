import Foundation
import GRDB

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The database could not be opened, created or migrated: says which file, and why in words (a full
/// disk says so).
public struct StoreOpenError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    init(path: String, error: DatabaseError) {
        let reason: String
        switch error.resultCode {
        case .SQLITE_FULL: reason = "the disk is full (\(error.message ?? "SQLITE_FULL")); free some space and start again"
        case .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_READONLY:
            reason = "\(error.message ?? "\(error.resultCode)"); check the path and that this user may read and write it and its folder"
        case .SQLITE_NOTADB, .SQLITE_CORRUPT:
            reason = "\(error.message ?? "\(error.resultCode)"); restore it from backup (docs/operations.md)"
        default: reason = error.message ?? "\(error.resultCode)"
        }
        self.init(path: path, reason: reason)
    }

    public var description: String { "cannot open the database \(path): \(reason)" }

    /// Creates the database file, mode 0600, when nothing is at `path` (and its folder, mode 0700, when
    /// that is missing too), so SQLite opens a private file: it creates the -wal and -shm files with the
    /// database's mode. An existing file is left as it is.
    static func createPrivately(_ path: String) throws {
        var info = stat()
        if lstat(path, &info) == 0 { return }
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty && !FileManager.default.fileExists(atPath: folder) {
            do {
                try FileManager.default.createDirectory(
                    atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw StoreOpenError(path: path, reason: "cannot create its folder \(folder): \(error.localizedDescription)")
            }
        }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if descriptor < 0 {
            if errno == EEXIST { return }  // someone else made it meanwhile: SQLite opens theirs
            throw StoreOpenError(path: path, reason: "cannot create it: \(Self.describe(errno: errno))")
        }
        close(descriptor)
    }

    static func describe(errno code: Int32) -> String {
        code == ENOSPC ? "the disk is full; free some space and start again" : String(cString: strerror(code))
    }
}

/// What is at the configured database path before `serve` opens it (opening creates and migrates).
public enum ExistingDatabase {
    /// Nothing there yet: `serve` creates it.
    case none
    /// A database holding this many hosts (of any state).
    case hosts(Int)

    /// Looks without writing anything: a database that exists but does not open read-only (a folder, a
    /// file this user cannot read, not a database) throws `StoreOpenError`, so that `serve` never puts an
    /// empty database where the configuration names one it cannot read.
    public static func inspect(_ path: String) throws -> ExistingDatabase {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return .none }
            throw StoreOpenError(path: path, reason: String(cString: strerror(errno)))
        }
        guard stat(path, &info) == 0 else {
            throw StoreOpenError(path: path, reason: "it is a link to \(Self.target(path)), which \(String(cString: strerror(errno)))")
        }
        guard Int(info.st_mode) & Int(S_IFMT) == Int(S_IFREG) else { throw StoreOpenError(path: path, reason: "it is not a file") }
        guard access(path, R_OK | W_OK) == 0 else {
            throw StoreOpenError(path: path, reason: "this user may not read and write it (\(String(cString: strerror(errno))))")
        }
        if info.st_size == 0 { return .hosts(0) }
        var configuration = GRDB.Configuration()
        configuration.readonly = true
        do {
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            defer { try? queue.close() }
            return try queue.read { db in
                guard try db.tableExists("hosts") else { return .hosts(0) }
                return .hosts(try Int.fetchOne(db, sql: "SELECT count(*) FROM hosts") ?? 0)
            }
        } catch let error as DatabaseError {
            throw StoreOpenError(path: path, error: error)
        }
    }

    static func target(_ path: String) -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "another path"
    }
}
