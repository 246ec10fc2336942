import Foundation
import Hummingbird
import Logging
import NIOCore
import OneTouchCLI
import OneTouchCore
import OneTouchTesting
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The built executables (`swift build` puts them beside the test bundle); `ONETOUCH_BIN_DIR` overrides.
enum Built {
    static func path(_ name: String) throws -> String {
        if let folder = ProcessInfo.processInfo.environment["ONETOUCH_BIN_DIR"] { return folder + "/" + name }
        var folder = URL(fileURLWithPath: Bundle.main.executablePath ?? CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<5 {
            let candidate = folder.appendingPathComponent(name).path
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate, isDirectory: &isFolder), !isFolder.boolValue,
                FileManager.default.isExecutableFile(atPath: candidate)
            {
                return candidate
            }
            folder.deleteLastPathComponent()
        }
        throw HarnessError("no built \(name) found near the test bundle; run `swift build --build-tests` first")
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Bytes a child process wrote, collected as they arrive.
final class Collected: Sendable {
    private let bytes = Mutex(Data())
    private let ended = Mutex(false)

    /// Reads `descriptor` on a thread of its own until end of file, then closes it.
    func readAll(from descriptor: Int32) {
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = read(descriptor, &buffer, buffer.count)
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                self.bytes.withLock { $0.append(contentsOf: buffer[0..<count]) }
            }
            close(descriptor)
            self.ended.withLock { $0 = true }
        }
    }

    var data: Data { bytes.withLock { $0 } }
    var text: String { String(decoding: data, as: UTF8.self) }
    var isEnded: Bool { ended.withLock { $0 } }
}

/// A built executable (or a program given by its absolute path) run with pipes for stdout and stderr,
/// as a shell pipeline would run it. Spawned with posix_spawn and close-on-exec pipes, so that the
/// children other tests start meanwhile do not hold this one's pipes open (its end of file would
/// never come).
final class Child: Sendable {
    let pid: pid_t
    let stdout = Collected()
    let stderr = Collected()
    private let status = Mutex<Int32?>(nil)

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        let path = executable.hasPrefix("/") ? executable : try Built.path(executable)
        var env = ProcessInfo.processInfo.environment
        for key in ["ONETOUCH_TOKEN", "ONETOUCH_TOKEN_FILE", "ONETOUCH_SERVER", KillSwitch.variable] { env[key] = nil }
        env.merge(environment) { $1 }
        var out: [Int32] = [0, 0]
        var err: [Int32] = [0, 0]
        guard pipe(&out) == 0, pipe(&err) == 0 else { throw HarnessError("pipe: \(errno)") }
        for descriptor in out + err { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_adddup2(&actions, err[1], 2)
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid = pid_t()
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, envp)
        close(out[1])
        close(err[1])
        guard spawned == 0 else {
            close(out[0])
            close(err[0])
            throw HarnessError("cannot run \(path): \(String(cString: strerror(spawned)))")
        }
        self.pid = pid
        stdout.readAll(from: out[0])
        stderr.readAll(from: err[0])
        let child = pid
        Thread.detachNewThread {
            var raw: Int32 = 0
            while waitpid(child, &raw, 0) < 0 && errno == EINTR {}
            // Exited: its status; killed by a signal: 128 + the signal, as a shell reports it.
            let code = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
            self.status.withLock { $0 = code }
        }
    }

    /// Waits until stdout holds `text` (while the process may still run); returns stdout so far.
    @discardableResult
    func waitForOutput(_ text: String, timeout: Duration = .seconds(20)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if stdout.text.contains(text) { return stdout.text }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw HarnessError("no '\(text)' on stdout after \(timeout); stdout: \(stdout.text) stderr: \(stderr.text)")
    }

    var isRunning: Bool { status.withLock { $0 == nil } }

    /// Waits for the process to end and its pipes to drain; returns its exit status.
    func exitStatus(timeout: Duration = .seconds(30)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while isRunning || !stdout.isEnded || !stderr.isEnded {
            if ContinuousClock.now > deadline {
                kill(pid, SIGKILL)
                throw HarnessError("still running after \(timeout); stdout: \(stdout.text) stderr: \(stderr.text)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return status.withLock { $0 ?? -1 }
    }

    func interrupt() { kill(pid, SIGINT) }

    /// Runs to the end and returns (status, stdout, stderr).
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> (
        status: Int32, stdout: String, stderr: String
    ) {
        let child = try Child(executable, arguments, environment: environment)
        let status = try await child.exitStatus()
        return (status, child.stdout.text, child.stderr.text)
    }
}

/// `serve`'s composition root (`OneTouchApplication`) with fake adapters and a manual clock, its admin
/// API on a real port, and helpers that play the engine and the host. The CLI under test is the built
/// executable, talking to it over HTTP.
final class LiveServer: @unchecked Sendable {
    static let adminToken = "admin-token-0123456789abcdef-cli"

    let folder: String
    let tokenFile: String
    let app: OneTouchApplication
    let clock: ManualClock
    let url: String
    private let task: Task<Void, any Error>

    private init(
        folder: String, tokenFile: String, app: OneTouchApplication, clock: ManualClock, url: String, task: Task<Void, any Error>
    ) {
        self.folder = folder
        self.tokenFile = tokenFile
        self.app = app
        self.clock = clock
        self.url = url
        self.task = task
    }

    static func start() async throws -> LiveServer {
        let folder = NSTemporaryDirectory() + "onetouch-cli-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let tokenFile = folder + "/admin-token"
        try "# the CLI tests' admin token\n\n\(adminToken)\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        chmod(tokenFile, 0o600)
        let configuration = try Configuration.parse(
            yaml: """
                public_url: http://127.0.0.1:8780
                database: onetouch.sqlite
                master_key_file: master.key
                admin_tokens: {file: admin-token}
                domain: onetouch.test
                config: {repository: "https://git.example.test/config.git"}
                roles:
                  web: {instance_type: t3.small}
                provider: {kind: fake}
                directory: {kind: fake}
                """, file: folder + "/onetouch.yaml")
        let clock = ManualClock()
        let app = try OneTouchApplication(
            configuration: configuration, adapters: Adapters(cloud: FakeCloud(), directory: FakeDirectory(), notifier: FakeNotifier()),
            environment: [:], logger: Logger(label: "cli-test") { _ in SwiftLogNoOpLogHandler() }, clock: clock,
            random: SeededRandom(seed: 1), ids: SequentialIDs())
        let (ports, portFound) = AsyncStream<Int>.makeStream()
        let http = Application(
            router: app.router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                portFound.yield(channel.localAddress?.port ?? 0)
                portFound.finish()
            }, logger: Logger(label: "cli-test") { _ in SwiftLogNoOpLogHandler() })
        let task = Task { try await http.runService(gracefulShutdownSignals: []) }
        var port = 0
        for await found in ports { port = found }
        return LiveServer(folder: folder, tokenFile: tokenFile, app: app, clock: clock, url: "http://127.0.0.1:\(port)", task: task)
    }

    /// Options every CLI call takes to reach this server.
    var client: [String] { ["--server", url, "--token-file", tokenFile] }

    /// Runs the engine, moving the clock to the next due time, until `name` is in `state` (at `step`).
    func drive(_ name: String, until state: String, step: Step? = nil) async throws {
        for _ in 0..<200 {
            await app.engine.runUntilIdle()
            let host = try app.service.host(named: name)
            if host.hostState.kind.rawValue == state && (step == nil || host.step == step) { return }
            guard let next = await app.engine.nextDue() else { break }
            if next > clock.now { clock.set(next) }
        }
        let host = try app.service.host(named: name)
        throw HarnessError("\(name) is \(host.hostState), not \(state)")
    }

    /// What the host itself sends: a report with its token.
    func report(_ name: String, _ report: HostService.Report) async throws {
        let host = try app.service.host(named: name)
        let token = SecretBox(masterKey: try SecretBox.loadOrCreateMasterKey(at: folder + "/master.key")).hostToken(
            hostID: host.id, generation: host.generation)
        _ = try await app.service.report(hostID: host.id, token: token.reveal(), report)
    }

    func stop() async {
        task.cancel()
        _ = await task.result
        try? FileManager.default.removeItem(atPath: folder)
    }
}
