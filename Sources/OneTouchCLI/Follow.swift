import Foundation
import OneTouchCore

/// Follows a host's events live, one line per transition with how long the previous one took. Each line
/// is written as it happens (`Output`), also into a pipe.
struct Follow {
    let api: AdminClient
    let name: String
    let json: Bool
    var fromStart = false

    /// Follows until the host settles. Ctrl-C stops following, not the host: it throws `Interrupted`,
    /// which says `carriesOn` and how to follow the host again (exit 130). `first` runs once Ctrl-C is
    /// caught (a line printed before that could be followed by a Ctrl-C that ends the process mute).
    func untilSettled(orInterrupted carriesOn: String, first: @escaping @Sendable () -> Void = {}) async throws {
        let message = """
            stopped following \(name). \(carriesOn)
            Follow it again with `onetouch events \(name) --follow`, or see where it is with `onetouch status \(name)`.
            """
        try await Interrupted.onSIGINT(message) {
            first()
            try await untilSettled()
        }
    }

    func untilSettled() async throws {
        var after: Int64 = 0
        var previous: Date?
        while true {
            let data = try await api.get("/v1/admin/hosts/\(AdminClient.escape(name))/events?after=\(after)")
            for event in try api.decode([EventView].self, data) {
                after = event.id
                if json {
                    try printJSON(event)
                } else {
                    Output.line(Self.line(event, duration: previous.map { event.at.timeIntervalSince($0) }))
                }
                previous = event.at
            }
            let host = try api.decode(HostView.self, try await api.get("/v1/admin/hosts/\(AdminClient.escape(name))"))
            switch host.state {
            case "ready", "destroyed":
                if !json { Output.line("\(host.name): \(host.state)") }
                return
            case "failed", "paused":
                if !json {
                    Output.line("\(host.name): \(host.state) at \(host.step ?? "-"): \(host.reason ?? "no reason recorded")")
                    if host.reason?.contains("onetouch ") != true { Output.line("continue with: onetouch resume \(host.name)") }
                }
                throw AdminClient.Failure(exitCode: 1, description: "\(host.name) \(host.state) at step \(host.step ?? "-")")
            default:
                try await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// One event as a line; its reason, which may quote a host, is printed by `Output.line`, which shows
    /// control characters and line breaks as visible escapes.
    static func line(_ event: EventView, duration: TimeInterval?) -> String {
        let time = ISO8601DateFormatter().string(from: event.at)
        let took = duration.map { String(format: " (+%.1fs)", $0) } ?? ""
        return "\(time) \(event.from ?? "-") -> \(event.to)\(took)  \(event.reason)"
    }
}

/// Ctrl-C while the CLI followed a host. The host is the server's to drive, so it carries on; the
/// message says so and how to follow it again. Exit code 130 (128 + SIGINT, as shells report it).
struct Interrupted: Error, CustomStringConvertible {
    static let exitCode: Int32 = 130
    let description: String

    /// Runs `body`; a SIGINT meanwhile cancels it and throws `Interrupted(message)` instead of ending the
    /// process where it stands. SIGINT's usual effect is restored afterwards.
    static func onSIGINT(_ message: String, _ body: @escaping @Sendable () async throws -> Void) async throws {
        let (signals, arrived) = AsyncStream<Void>.makeStream()
        signal(SIGINT, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { arrived.yield() }
        source.resume()
        defer {
            source.cancel()
            signal(SIGINT, SIG_DFL)
            arrived.finish()
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await body() }
            group.addTask {
                for await _ in signals { throw Interrupted(description: "\n" + message) }
                try Task.checkCancellation()
                throw CancellationError()
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }
}
