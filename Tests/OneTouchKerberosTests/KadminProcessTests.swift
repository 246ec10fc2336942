import Foundation
import OneTouchCore
import OneTouchKerberos
import Testing

@Suite("kadmin processes and the cooperative threads")
struct KadminProcessTests {
    /// While kadmin runs, the rest of the process must go on: the engine and the HTTP server share the
    /// cooperative threads (as many as the cores), so kadmin's output must not be read on them.
    ///
    /// Twice as many kadmin runs as there are cooperative threads, each waiting (up to 10 s) for a
    /// signal the test gives only once it has seen all of them start. Were a run to hold a cooperative
    /// thread until it ends, the runs beyond the first few could not start and the test could not give
    /// the signal: the runs would end on their own 10 s wait, unreleased. Load slows this down but
    /// cannot make it pass, so the test needs no timing.
    @Test func slowKadminRunsDoNotStallOtherWork() async throws {
        let directory = NSTemporaryDirectory() + "onetouch-kadmin-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let script = directory + "/kadmin"
        try """
        #!/bin/sh
        touch "\(directory)/started-$$"
        for _ in $(seq 100); do [ -e "\(directory)/go" ] && break; sleep 0.1; done
        [ -e "\(directory)/go" ] && touch "\(directory)/released-$$"
        echo 'get_principal: Principal does not exist while retrieving' >&2
        exit 1

        """.write(toFile: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script)
        var settings = MITDirectory.Settings(
            realm: "ONETOUCH.TEST", adminServer: "127.0.0.1:9", kdc: "127.0.0.1:9", principal: "onetouch/admin", keytab: "/dev/null")
        settings.kadmin = script
        let mit = MITDirectory(settings: settings)
        let runs = ProcessInfo.processInfo.activeProcessorCount * 2
        func count(_ prefix: String) -> Int {
            ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix(prefix) }.count
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<runs {
                group.addTask { _ = try? await mit.lookup(DirectoryHost(fqdn: "web-\(i).onetouch.test")) }
            }
            group.addTask {
                while count("started-") < runs { try await Task.sleep(for: .milliseconds(20)) }
                _ = FileManager.default.createFile(atPath: directory + "/go", contents: nil)
            }
            try await group.waitForAll()
        }
        #expect(count("released-") == runs, "\(count("released-")) of \(runs) kadmin runs were released by the test while they ran")
    }
}
