import Foundation
import OneTouchCore
import OneTouchKerberos
import Testing

@Suite("kadmin processes and the cooperative threads")
struct KadminProcessTests {
    /// While kadmin runs, the rest of the process must go on: the engine and the HTTP server share the
    /// cooperative threads (as many as the cores), so kadmin's output must not be read on them.
    @Test func slowKadminRunsDoNotStallOtherWork() async throws {
        let directory = NSTemporaryDirectory() + "onetouch-kadmin-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let script = directory + "/kadmin"
        try "#!/bin/sh\nsleep 4\necho 'get_principal: Principal does not exist while retrieving' >&2\nexit 1\n"
            .write(toFile: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script)
        var settings = MITDirectory.Settings(
            realm: "ONETOUCH.TEST", adminServer: "127.0.0.1:9", kdc: "127.0.0.1:9", principal: "onetouch/admin", keytab: "/dev/null")
        settings.kadmin = script
        let mit = MITDirectory(settings: settings)
        // More kadmin runs at once than there are cooperative threads, twice over.
        let runs = ProcessInfo.processInfo.activeProcessorCount * 2
        let start = ContinuousClock.now
        let ticks = try await withThrowingTaskGroup(of: Int?.self) { group in
            for i in 0..<runs {
                group.addTask {
                    _ = try? await mit.lookup(DirectoryHost(fqdn: "web-\(i).onetouch.test"))
                    return nil
                }
            }
            group.addTask {
                // A ticker that counts its 50 ms sleeps while every kadmin run is still under way (4 s each).
                // With the cooperative threads blocked it could not run at all until the first runs end:
                // at most one tick. Unblocked, it ticks about 60 times; a loaded machine slows it, not stops it.
                var ticks = 0
                while ContinuousClock.now - start < .seconds(3) {
                    try await Task.sleep(for: .milliseconds(50))
                    ticks += 1
                }
                return ticks
            }
            var found: Int?
            for try await result in group { if let result { found = result } }
            return found
        }
        let counted = try #require(ticks)
        #expect(counted >= 10, "the ticker ticked only \(counted) times in 3 s while \(runs) kadmin runs were under way")
    }
}
