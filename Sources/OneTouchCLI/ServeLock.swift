import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The one-driver guarantee: `serve` holds an exclusive OS lock (`flock`) on a file next to the
/// database for as long as it runs, taken before the database is opened, migrated or given a master
/// key. The kernel drops the lock when the process dies, however it dies, and keeps it while the
/// process is merely stopped (SIGSTOP, a paused VM): a second `serve` is refused then, instead of
/// taking over an expired lease while the first can still wake up and write.
final class ServeLock: Sendable {
    let path: String
    private let descriptor: Int32
    private static let heldHere = Atomic<Bool>(false)

    /// True once this process holds a serve lock: then no other process can be driving the database,
    /// and a lease row naming another holder is left over from a process that is gone.
    static var isHeldByThisProcess: Bool { heldHere.load(ordering: .acquiring) }

    struct Held: Error, CustomStringConvertible {
        let database: String
        let holder: String
        var description: String {
            "another onetouch serve (\(holder)) is running on the database \(database); stop it first (`systemctl stop onetouch`, or its PID), or point this one at another database"
        }
    }

    struct Failed: Error, CustomStringConvertible {
        let path: String
        let reason: String
        var description: String { "cannot lock \(path): \(reason); check that the database's folder is writable" }
    }

    /// Takes the lock of the database at `database` (`<database>.lock`, mode 0600), or throws `Held`
    /// naming the process that has it.
    static func acquire(database: String) throws -> ServeLock {
        let path = database + ".lock"
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty { try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failed(path: path, reason: String(cString: strerror(errno))) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let busy = errno == EWOULDBLOCK
            let reason = String(cString: strerror(errno))
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            close(fd)
            if busy { throw Held(database: database, holder: holder.flatMap { $0.isEmpty ? nil : $0 } ?? "another process") }
            throw Failed(path: path, reason: reason)
        }
        // Who holds it, for the message a second `serve` prints.
        let text = Array("\(ProcessLease.owner)\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        heldHere.store(true, ordering: .releasing)
        return ServeLock(path: path, descriptor: fd)
    }

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)
        Self.heldHere.store(false, ordering: .releasing)
    }
}
