import Foundation
import Hummingbird
import Logging
import OneTouchCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("CLI input: token files, host names, and no test switch in the product", .serialized)
struct ClientInputTests {
    @Test func aTokenFileOthersMayReadIsRefusedByTheCLI() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        chmod(server.tokenFile, 0o644)
        let byOption = try await Child.run("onetouch", ["list", "--server", server.url, "--token-file", server.tokenFile])
        #expect(byOption.status == 2)
        #expect(byOption.stderr.contains("--token-file: the token file \(server.tokenFile) is open to others (mode 644)"))
        #expect(byOption.stderr.contains("chmod 600 \(server.tokenFile)"))
        let byVariable = try await Child.run(
            "onetouch", ["list", "--server", server.url], environment: ["ONETOUCH_TOKEN_FILE": server.tokenFile])
        #expect(byVariable.status == 2)
        #expect(byVariable.stderr.contains("ONETOUCH_TOKEN_FILE: the token file"))

        chmod(server.tokenFile, 0o600)
        // The file starts with a comment and a blank line, as the server's own token file may.
        let fine = try await Child.run(
            "onetouch", ["list", "--server", server.url], environment: ["ONETOUCH_TOKEN_FILE": server.tokenFile])
        #expect(fine.status == 0, "\(fine.stderr)")
        #expect(fine.stdout == "no hosts\n")
    }

    @Test func aTokenFileWithOnlyCommentsSaysSo() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        try "# nothing here yet\n\n".write(toFile: server.tokenFile, atomically: true, encoding: .utf8)
        chmod(server.tokenFile, 0o600)
        let run = try await Child.run("onetouch", ["list"] + server.client)
        #expect(run.status == 2)
        #expect(run.stderr.contains("no admin token found in \(server.tokenFile)"))
    }

    @Test func aNameOutsideTheConfiguredDomainIsRefused() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let evil = try await Child.run("onetouch", ["create", "web-01.evil.com", "--role", "web"] + server.client)
        #expect(evil.status == 2)
        #expect(evil.stderr.contains("only hosts in onetouch.test are made here"))
        #expect(try server.app.store.hosts().isEmpty, "nothing launched, no principal")
        // A name that looks inside but is not (a suffix without the dot).
        let sneaky = try await Child.run("onetouch", ["create", "web-01.evilonetouch.test", "--role", "web"] + server.client)
        #expect(sneaky.status == 2)
        let inside = try await Child.run("onetouch", ["create", "web-01.onetouch.test", "--role", "web"] + server.client)
        #expect(inside.status == 0, "\(inside.stderr)")
        #expect(try server.app.service.host(named: "web-01.onetouch.test").decodedSpec.fqdn == "web-01.onetouch.test")
    }

    @Test func helpGoesToStandardOutput() async throws {
        let run = try await Child.run("onetouch", ["--help"])
        #expect(run.status == 0)
        #expect(run.stdout.contains("130 Ctrl-C while following a host (the host carries on)"))
        #expect(run.stderr.isEmpty)
    }

    /// A server error without a body (what an unexpected error, such as a full disk, gives) is not an
    /// empty "error:" line: the CLI says where to look.
    @Test func aServerErrorWithoutABodySaysWhereToLook() async throws {
        let router = Router()
        router.get("/healthz") { _, _ in "ok" }
        router.get("/v1/admin/hosts") { _, _ -> Response in Response(status: .internalServerError) }
        let (ports, portFound) = AsyncStream<Int>.makeStream()
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                portFound.yield(channel.localAddress?.port ?? 0)
                portFound.finish()
            }, logger: Logger(label: "cli-test") { _ in SwiftLogNoOpLogHandler() })
        let server = Task { try await app.runService(gracefulShutdownSignals: []) }
        defer { server.cancel() }
        var port = 0
        for await found in ports { port = found }
        let run = try await Child.run(
            "onetouch", ["list", "--server", "http://127.0.0.1:\(port)"], environment: ["ONETOUCH_TOKEN": LiveServer.adminToken])
        #expect(run.status == 1)
        #expect(run.stderr.contains("the server answered HTTP 500 without saying why; `onetouch serve`'s log says what went wrong"))
    }

    /// The crash tests' switch lives in `onetouch-crashtest` only: the shipped executable does not even
    /// contain the variable's name, so no environment can make it kill itself.
    @Test func theProductContainsNoKillSwitch() throws {
        let product = try Data(contentsOf: URL(fileURLWithPath: try Built.path("onetouch")))
        let tooling = try Data(contentsOf: URL(fileURLWithPath: try Built.path("onetouch-crashtest")))
        let name = Data("ONETOUCH_TEST_KILL_AT".utf8)
        #expect(product.range(of: name) == nil, "onetouch reads ONETOUCH_TEST_KILL_AT")
        #expect(tooling.range(of: name) != nil, "the search itself works: onetouch-crashtest has it")
    }

    @Test func theCrashTestExecutableRefusesAMalformedSwitch() async throws {
        let run = try await Child.run("onetouch-crashtest", ["--help"], environment: ["ONETOUCH_TEST_KILL_AT": "provision"])
        #expect(run.status == 2)
        #expect(run.stderr.contains("STEP:POINT[:N]"))
    }
}
