import Foundation
import Testing

@testable import OneTouchCLI

@Suite("One serve per database")
struct ServeLockTests {
    @Test func aSecondServeIsRefusedNamingTheFirstAndMayStartOnceItIsGone() throws {
        let folder = NSTemporaryDirectory() + "onetouch-lock-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let database = folder + "/data/onetouch.sqlite"
        var first: ServeLock? = try ServeLock.acquire(database: database)
        #expect(ServeLock.isHeldByThisProcess)
        #expect(ProcessLease.holderIsGone("some-other-host pid 1"), "with the lock held, any other lease holder is gone")
        do {
            _ = try ServeLock.acquire(database: database)
            Issue.record("a second lock on the same database was granted")
        } catch let held as ServeLock.Held {
            #expect(held.description.contains("another onetouch serve (\(ProcessLease.owner)) is running on the database \(database)"))
            #expect(held.description.contains("stop it first"))
        }
        let mode = try FileManager.default.attributesOfItem(atPath: database + ".lock")[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        #expect(first != nil)
        first = nil  // the process holding it is gone
        let again = try ServeLock.acquire(database: database)
        #expect(again.path == database + ".lock")
    }
}
