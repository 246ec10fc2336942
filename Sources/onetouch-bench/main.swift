// The engine benchmark (`scripts/bench-engine`): prints numbers, asserts nothing about time.
//
//   onetouch-bench workflow [N]          N hosts (default 1,000) through every step, fake adapters
//   onetouch-bench first-action [ROWS]   process start → first resumed action, ROWS unfinished hosts
import Foundation
import GRDB
import OneTouchCore
import OneTouchTesting

#if canImport(Glibc)
    import Glibc
#endif

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
        + Double(usage.ru_stime.tv_usec) / 1e6
}

func peakRSSMiB() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_maxrss) / 1024
}

func workflow(hosts: Int) async throws {
    var options = EngineTestBed.defaultOptions
    options.concurrency = Int(ProcessInfo.processInfo.environment["BENCH_CONCURRENCY"] ?? "") ?? 32
    // Logs at info, `serve`'s default level, captured in memory.
    let bed = try EngineTestBed(cloud: FakeCloud(pendingDescribes: 0), options: options, logLevel: .info)
    defer { bed.remove() }
    for i in 1...hosts { try await bed.create("host-\(i)") }
    let cpuBefore = cpuSeconds()
    let start = Date()
    // The same loop as EngineTestBed.settle, timing the engine apart from the simulated hosts.
    var engineCPU = 0.0
    var (engineCommits, engineWrites) = (0, 0)
    var rounds = 0
    while rounds < 100_000 {
        rounds += 1
        let mark = (cpu: cpuSeconds(), commits: bed.store.commits, writes: bed.store.writes)
        await bed.engine.runUntilIdle()
        engineCPU += cpuSeconds() - mark.cpu
        engineCommits += bed.store.commits - mark.commits
        engineWrites += bed.store.writes - mark.writes
        if try await bed.simulateHosts() > 0 { continue }
        guard let next = await bed.engine.nextDue() else { break }
        if next > bed.clock.now { bed.clock.set(next) }
    }
    let wall = Date().timeIntervalSince(start)
    let cpu = cpuSeconds() - cpuBefore
    let ready = try bed.store.hosts(state: .ready).count
    let transitions = try await bed.store.pool.read { db in
        try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM events WHERE from_state IS NOT NULL") ?? 0
    }
    print("hosts: \(hosts), ready: \(ready)")
    print("wall: \(String(format: "%.2f", wall)) s (\(String(format: "%.2f", wall / Double(hosts) * 1000)) ms per host)")
    print(
        "engine cpu (with the fake adapters): \(String(format: "%.2f", engineCPU)) s, \(String(format: "%.2f", engineCPU / Double(hosts) * 1000)) ms per host, \(rounds) rounds"
    )
    print(
        "cpu (engine + fakes + simulated hosts): \(String(format: "%.2f", cpu)) s, \(String(format: "%.2f", cpu / Double(hosts) * 1000)) ms per host"
    )
    // Writes: the transactions the engine asked for; commits: what reached the disk (writes queued
    // while a commit synced share the next one).
    print(
        "transitions: \(transitions), engine writes: \(engineWrites) (\(String(format: "%.2f", Double(engineWrites) / Double(transitions))) per transition), engine commits: \(engineCommits) (\(String(format: "%.2f", Double(engineCommits) / Double(transitions))) per transition)"
    )
    print("peak RSS: \(String(format: "%.1f", peakRSSMiB())) MiB")
    if ready != hosts { throw BenchFailure("only \(ready) of \(hosts) hosts became ready") }
}

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Parent: fills a database with `rows` unfinished hosts, then times a child process from spawn to
/// its first committed step attempt.
func firstAction(rows: Int) throws {
    let directory = NSTemporaryDirectory() + "onetouch-bench-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let path = directory + "/onetouch.sqlite"
    let store = try Store(path: path)
    let now = Date()
    try store.pool.write { db in
        for i in 1...rows {
            let spec = HostSpec(
                name: "host-\(i)", fqdn: "host-\(i).onetouch.test", role: "web", instanceType: "t3.small", volumeGiB: 20,
                playbook: "web.yml")
            try db.execute(
                sql: """
                    INSERT INTO hosts (id, name, role, spec, state, step, generation, facts, token_hash, next_at, created_at, updated_at)
                    VALUES (?, ?, 'web', ?, 'running', 'provision', 1, '{}', X'01', ?, ?, ?)
                    """,
                arguments: [
                    String(format: "h-%06d", i), spec.name, String(decoding: try JSONEncoder().encode(spec), as: UTF8.self), now, now, now,
                ])
        }
    }
    let child = Process()
    child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
    child.arguments = ["first-action-child", path, directory + "/master.key"]
    let output = Pipe()
    child.standardOutput = output
    let start = Date()
    try child.run()
    child.waitUntilExit()
    let elapsed = Date().timeIntervalSince(start)
    let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    guard said.contains("FIRST_ACTION") else { throw BenchFailure("the child never acted: \(said)") }
    print("rows: \(rows), process start → first resumed action: \(String(format: "%.0f", elapsed * 1000)) ms")
}

/// Child: opens the database, resumes every unfinished host, exits at the first committed attempt.
func firstActionChild(path: String, keyPath: String) async throws {
    let store = try Store(path: path)
    let logs = LogCapture()
    let services = StepServices(
        cloud: FakeCloud(), directory: FakeDirectory(), notifier: FakeNotifier(), store: store,
        secrets: SecretBox(masterKey: try SecretBox.loadOrCreateMasterKey(at: keyPath)),
        renderer: UserDataRenderer(
            publicURL: "http://127.0.0.1:1", configRepository: "r", configBranch: "main", pullPeriod: .seconds(1800)),
        logger: logs.logger())
    let engine = Engine(
        services: services, clock: SystemClock(), owner: "bench",
        crashHook: { _, point in
            if point == .attemptCommitted {
                FileHandle.standardOutput.write(Data("FIRST_ACTION\n".utf8))
                exit(0)
            }
        })
    try await engine.run()
}

let arguments = CommandLine.arguments
do {
    switch arguments.count > 1 ? arguments[1] : "workflow" {
    case "workflow": try await workflow(hosts: arguments.count > 2 ? Int(arguments[2]) ?? 1000 : 1000)
    case "first-action": try firstAction(rows: arguments.count > 2 ? Int(arguments[2]) ?? 10_000 : 10_000)
    case "first-action-child": try await firstActionChild(path: arguments[2], keyPath: arguments[3])
    default:
        FileHandle.standardError.write(Data("usage: onetouch-bench workflow [N] | first-action [ROWS]\n".utf8))
        exit(2)
    }
} catch {
    FileHandle.standardError.write(Data("bench failed: \(error)\n".utf8))
    exit(1)
}
