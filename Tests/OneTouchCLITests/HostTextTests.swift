import Foundation
import OneTouchCore
import Testing

/// What a VM sends reaches the operator's terminal as text, never as escape sequences, through the real
/// `onetouch` executable reading a real server over HTTP.
@Suite("Host text on the terminal: escape sequences made visible", .serialized)
struct HostTextTests {
    /// A log tail that clears the screen, homes the cursor, retitles the window (OSC), hides text, rings
    /// the bell, sends a C1 CSI, DEL, a carriage return and a right-to-left override.
    static let evilTail =
        "step 1 ok\n\u{1B}[2J\u{1B}[H\u{1B}]0;pwned\u{07}\u{1B}[8mhidden\u{1B}[0m\n\u{9B}31mred\u{7F}\rover\tafter-tab\nfinal \u{202E}gnp.exe"

    /// Bytes and characters a terminal obeys: none may reach it.
    static func assertNothingATerminalObeys(_ text: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let bad = text.unicodeScalars.filter { scalar in
            (scalar.value < 0x20 && scalar != "\n" && scalar != "\t") || (0x7F...0x9F).contains(scalar.value)
                || scalar.value == 0x202E
        }
        #expect(bad.isEmpty, "\(what) carries \(bad.map { String($0.value, radix: 16) }): \(text)", sourceLocation: sourceLocation)
    }

    func failWithEvilTail(_ server: LiveServer, _ name: String) async throws {
        try await server.drive(name, until: "waiting", step: .bootstrap)
        try await server.report(name, .init(stage: .failed, exitStatus: 1, logTail: Self.evilTail, failedStage: .packages))
        try await server.drive(name, until: "failed")
    }

    @Test func statusAndEventsShowTheLogTailAndReasonsAsVisibleEscapes() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        _ = try await server.app.service.create(.init(name: "web-01", role: "web"), actor: "test")
        try await failWithEvilTail(server, "web-01")

        let status = try await Child.run("onetouch", ["status", "web-01"] + server.client)
        #expect(status.status == 0, "\(status.stderr)")
        Self.assertNothingATerminalObeys(status.stdout, "status")
        #expect(status.stdout.contains(#"\e[2J\e[H\e]0;pwned\a\e[8mhidden\e[0m"#))
        #expect(status.stdout.contains(#"\u{009b}31mred\x7f\rover"#))
        #expect(status.stdout.contains("over\tafter-tab"), "the log tail is several lines: tabs kept")
        #expect(status.stdout.contains(#"final \u{202e}gnp.exe"#))
        // The reason quotes the tail's last lines on one line: its line breaks cannot forge lines.
        let reason = try #require(status.stdout.split(separator: "\n").first { $0.hasPrefix("  reason:") })
        #expect(reason.contains(#"\e[8mhidden"#))

        let events = try await Child.run("onetouch", ["events", "web-01"] + server.client)
        #expect(events.status == 0, "\(events.stderr)")
        Self.assertNothingATerminalObeys(events.stdout, "events")
        #expect(events.stdout.contains(#"\e]0;pwned\a"#))
        #expect(events.stdout.contains(#"\tafter-tab"#), "an event is one line: its tab is shown as \\t")
        #expect(events.stdout.split(separator: "\n").allSatisfy { $0.hasPrefix("20") }, "one line per event")
    }

    @Test func jsonOutputStaysJSONAndCarriesTheExactText() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        _ = try await server.app.service.create(.init(name: "web-01", role: "web"), actor: "test")
        try await failWithEvilTail(server, "web-01")

        let status = try await Child.run("onetouch", ["status", "web-01", "--json"] + server.client)
        #expect(status.status == 0, "\(status.stderr)")
        Self.assertNothingATerminalObeys(status.stdout, "status --json")
        let host = try APIDates.decoder().decode(HostView.self, from: Data(status.stdout.utf8))
        #expect(host.failureLog == Self.evilTail, "JSON escapes decode to the host's exact bytes")

        let events = try await Child.run("onetouch", ["events", "web-01", "--json"] + server.client)
        Self.assertNothingATerminalObeys(events.stdout, "events --json")
        let decoded = try APIDates.decoder().decode([EventView].self, from: Data(events.stdout.utf8))
        #expect(decoded.contains { $0.reason.contains("\u{1B}]0;pwned\u{07}") })
    }

    @Test func createWaitIntoAPipePrintsEachLineAsItHappensAndEscapesTheFailure() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let child = try Child("onetouch", ["create", "web-02", "--role", "web", "--wait"] + server.client)
        // Nobody drives the engine yet, so the host cannot settle: the line arrived while it waits.
        let created = try await child.waitForOutput("web-02: created (h-")
        #expect(child.isRunning)
        #expect(created.contains("role web)"))

        try await server.drive("web-02", until: "waiting", step: .bootstrap)
        try await child.waitForOutput("-> waiting")
        #expect(child.isRunning)

        try await server.report("web-02", .init(stage: .failed, exitStatus: 1, logTail: Self.evilTail, failedStage: .packages))
        try await server.drive("web-02", until: "failed")
        #expect(try await child.exitStatus() == 1)
        Self.assertNothingATerminalObeys(child.stdout.text, "create --wait")
        Self.assertNothingATerminalObeys(child.stderr.text, "create --wait's errors")
        #expect(child.stdout.text.contains(#"web-02: failed at bootstrap: "#))
        #expect(child.stdout.text.contains(#"\e[8mhidden"#))
    }

    @Test func ctrlCDuringCreateWaitSaysTheHostCarriesOnAndHowToFollowIt() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let child = try Child("onetouch", ["create", "web-03", "--role", "web", "--wait"] + server.client)
        let created = try await child.waitForOutput("web-03: created (h-")
        child.interrupt()
        #expect(try await child.exitStatus() == 130)
        #expect(child.stdout.text.hasPrefix(created), "the lines printed before Ctrl-C, with the host's id, are all there")
        #expect(child.stdout.text.hasPrefix("web-03: created (h-0001, role web)\n"))
        let message = child.stderr.text
        #expect(message.contains("stopped following web-03"))
        #expect(message.contains("carries on"))
        #expect(message.contains("`onetouch events web-03 --follow`"))
        #expect(message.contains("`onetouch status web-03`"))
        #expect(try server.app.service.host(named: "web-03").hostState == .pending, "the host itself is untouched")
    }

    @Test func eventsFollowIntoAPipePrintsEachEventAsItHappens() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        _ = try await server.app.service.create(.init(name: "web-04", role: "web"), actor: "test")
        let child = try Child("onetouch", ["events", "web-04", "--follow"] + server.client)
        try await child.waitForOutput("created with role web")
        #expect(child.isRunning)
        try await server.drive("web-04", until: "waiting", step: .bootstrap)
        try await child.waitForOutput("-> waiting")
        #expect(child.isRunning)
        child.interrupt()
        #expect(try await child.exitStatus() == 130)
        #expect(child.stderr.text.contains("`onetouch events web-04 --follow`"))
    }
}
