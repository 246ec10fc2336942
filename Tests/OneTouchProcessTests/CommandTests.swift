import Foundation
import OneTouchProcess
import Testing

@Suite("Helper programs: deadlines, stdin only, broken pipes")
struct CommandTests {
    @Test func inputReachesTheProgramOnStdinAndOutputComesBack() async throws {
        let outcome = try await Command(path: "/bin/sh").execute(
            ["-c", "read secret; echo \"got ${#secret} characters\""], input: "hunter2\n")
        #expect(outcome.succeeded)
        #expect(outcome.output == "got 7 characters\n")
    }

    @Test func aProgramThatExitsBeforeReadingItsInputIsAnOrdinaryFailure() async throws {
        // More than a pipe holds, so the write meets a reader that is gone: EPIPE, not SIGPIPE.
        let input = String(repeating: "x", count: 1 << 20)
        let outcome = try await Command(path: "/bin/sh").execute(["-c", "exit 3"], input: input)
        #expect(outcome.status == 3)
    }

    @Test func aProgramPastItsDeadlineIsStoppedAndSaysSo() async throws {
        let started = ContinuousClock.now
        let error = await #expect(throws: Command.Failed.self) {
            try await Command(path: "/bin/sleep").execute(["30"], timeout: .milliseconds(300))
        }
        #expect(error?.reason == .timedOut)
        // Stopped, not run to its end: well under the program's 30 s even on a loaded machine (12 s seen).
        #expect(ContinuousClock.now - started < .seconds(25))
    }

    @Test func aMissingProgramSaysWhereItWasLookedFor() async throws {
        let error = await #expect(throws: Command.Failed.self) { try await Command(path: "/nonexistent/kadmin").execute([]) }
        #expect(error?.reason == .cannotStart)
        #expect(error?.description.contains("/nonexistent/kadmin") == true)
    }

    @Test func runThrowsWithTheOutputOnANonZeroExit() async throws {
        let error = await #expect(throws: Command.Failed.self) {
            try await Command(path: "/bin/sh").run(["-c", "echo broken >&2; exit 1"])
        }
        #expect(error?.description.contains("broken") == true)
    }
}
