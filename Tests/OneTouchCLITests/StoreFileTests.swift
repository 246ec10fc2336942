import Foundation
import OneTouchCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("The database's files are private")
struct StoreFileTests {
    @Test func theDatabaseAndItsWALFilesAreCreatedPrivate() throws {
        let folder = NSTemporaryDirectory() + "onetouch-store-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let database = folder + "/data/onetouch.sqlite"
        let previous = umask(0o022)
        defer { umask(previous) }
        let store = try Store(path: database)
        for file in [database, database + "-wal", database + "-shm"] {
            var info = stat()
            #expect(stat(file, &info) == 0, "\(file) exists while the store is open")
            #expect(Int(info.st_mode) & 0o777 == 0o600, "\(file): mode \(String(Int(info.st_mode) & 0o777, radix: 8))")
        }
        var folderInfo = stat()
        #expect(stat(folder + "/data", &folderInfo) == 0 && Int(folderInfo.st_mode) & 0o777 == 0o700, "a new folder is 0700")
        _ = store
    }
}
