import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Starts and stops the test beds of `scripts/` from tests.
enum TestBedScript {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Runs `scripts/NAME` with posix_spawn + waitpid: the daemons a test-bed script leaves running hold
    /// its inherited descriptors, which Foundation's Process waits for.
    static func run(_ name: String, _ arguments: [String], environment extra: [String: String] = [:]) throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = root.appendingPathComponent("scripts/\(name)").path
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var environment = ProcessInfo.processInfo.environment
        for (name, value) in extra { environment[name] = value }
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        // stderr goes to a file that is read back into the error: "scripts/NAME failed" alone says
        // nothing about why a test bed did not start.
        let errors = NSTemporaryDirectory() + "onetouch-testbed-\(UUID().uuidString).stderr"
        defer { try? FileManager.default.removeItem(atPath: errors) }
        posix_spawn_file_actions_addopen(&actions, 2, errors, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        // The calling thread may block signals (the test runner's threads do), and a spawned process
        // inherits that mask: the server would never see the SIGTERM that `stop` sends.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGTERM)
        sigaddset(&defaults, SIGINT)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        guard spawned == 0 else { throw Failure(description: "scripts/\(name): posix_spawn: \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        guard status == 0 else {
            let text = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
            let command = "scripts/\(name) \(arguments.joined(separator: " "))"
            let code = (status >> 8) & 0xff  // WEXITSTATUS; a signal shows in the low bits
            throw Failure(description: "\(command) exited with \(code) (wait status \(status)): \(text.suffix(2000))")
        }
    }
}
