import Foundation
import OneTouchCLI
import Testing

@Suite("Command line: validation before any request, exit codes", .serialized)
struct CommandLineTests {
    init() {
        setenv("ONETOUCH_TOKEN", "admin-token-0123456789abcdef", 1)
    }

    /// Nothing listens on port 9 here: a request would exit 3, so exit 2 proves none was made.
    static let nowhere = "http://127.0.0.1:9"

    @Test(arguments: ["", "_", "Web-01", "-web", String(repeating: "a", count: 64), "web;reboot", "web$(id)", "web 01", "a..b"])
    func badNameExitsTwoWithoutARequest(name: String) async {
        let commands: [[String]] = [
            ["create", name, "--role", "web"], ["status", name], ["events", name], ["resume", name],
            ["retry", name, "--from", "provision"], ["destroy", name], ["render", name], ["render", name, "--json"],
        ]
        for command in commands {
            let code = await OneTouch.runMain(command + ["--server", Self.nowhere])
            #expect(code == 2, "\(command.joined(separator: " "))")
        }
    }

    @Test func unreachableServerExitsThree() async {
        #expect(await OneTouch.runMain(["create", "web-01", "--role", "web", "--server", Self.nowhere]) == 3)
        #expect(await OneTouch.runMain(["status", "web-01", "--server", Self.nowhere, "--json"]) == 3)
    }

    @Test func usageErrorsExitTwo() async {
        #expect(await OneTouch.runMain(["create", "web-01"]) == 2)  // --role missing
        #expect(await OneTouch.runMain(["retry", "web-01", "--from", "terminate", "--server", Self.nowhere]) == 2)
        #expect(await OneTouch.runMain(["retry", "web-01", "--from", "nowhere", "--server", Self.nowhere]) == 2)
        #expect(await OneTouch.runMain(["resume", "--server", Self.nowhere]) == 2)
        #expect(await OneTouch.runMain(["create", "web-01", "--role", "web", "--volume-gib", "0"]) == 2)
        #expect(await OneTouch.runMain(["frobnicate"]) == 2)
    }

    @Test func helpExitsZero() async {
        #expect(await OneTouch.runMain(["--help"]) == 0)
    }

    @Test func invalidConfigurationExitsTwo() async throws {
        let path = NSTemporaryDirectory() + "onetouch-bad-\(UUID().uuidString).yaml"
        try "public_url: http://x\nconcurrency: many\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(await OneTouch.runMain(["serve", "--config", path]) == 2)
    }
}
