import ArgumentParser
import Foundation
import Logging
import OneTouchBuildInfo
import OneTouchCore
import OneTouchSlack

/// `onetouch`: one command to a ready host.
public struct OneTouch: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "onetouch",
        abstract: "Create ready-to-use hosts with one command: VM, Kerberos, encrypted volume, configuration.",
        discussion: """
            Exit codes: 0 success, 1 the operation failed, 2 usage or validation error, 3 server unreachable, \
            130 Ctrl-C while following a host (the host carries on).
            """,
        version: BuildInfo.description,
        subcommands: [
            Serve.self, Create.self, Status.self, List.self, Events.self, Resume.self, Retry.self, Destroy.self,
            Render.self, Reconcile.self, DriftCommand.self, Check.self, RotateReportCredential.self, ConfigCommand.self,
            Backup.self,
        ])

    public init() {}

    /// Parses, runs, and exits with the documented exit codes. Only the crash tests' own executable,
    /// `onetouch-crashtest`, passes a `crashHook` (for `serve`); `onetouch` has none.
    public static func runMain(
        _ arguments: [String]? = nil, crashHook: (@Sendable (Step, CrashPoint) throws -> Void)? = nil
    ) async -> Int32 {
        do {
            var command = try parseAsRoot(arguments)
            if let serve = command as? Serve {
                try await serve.run(crashHook: crashHook)
            } else if var async = command as? any AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
            return 0
        } catch let failure as AdminClient.Failure {
            Output.error("error: \(failure.description)")
            return failure.exitCode
        } catch let interrupted as Interrupted {
            Output.error(interrupted.description)
            return Interrupted.exitCode
        } catch let error as ConfigurationError {
            Output.error("error: invalid configuration: \(error)")
            return 2
        } catch let error as StoreOpenError {
            Output.error("error: \(error)")
            return 1
        } catch let exit as ExitCode {
            return exit.rawValue
        } catch {
            let code = exitCode(for: error).rawValue
            let message = fullMessage(for: error)
            if code == 0 {
                // --help and --version: what was asked for, on stdout (`onetouch --help | less`).
                if !message.isEmpty { Output.block(message) }
                return 0
            }
            if !message.isEmpty { Output.error(message) }
            return code == ExitCode.validationFailure.rawValue ? 2 : (code == 1 ? 1 : 2)
        }
    }
}

/// Options every client command shares.
struct ClientOptions: ParsableArguments {
    @Option(help: "URL of the onetouch server (default: $ONETOUCH_SERVER or http://127.0.0.1:8780).")
    var server: String?

    @Option(help: "File holding the admin token (default: $ONETOUCH_TOKEN, else $ONETOUCH_TOKEN_FILE).")
    var tokenFile: String?

    /// The client, with the first token of the token file (read as `serve` reads its own: `AdminTokens`).
    func client() throws -> AdminClient {
        let environment = ProcessInfo.processInfo.environment
        let server = server ?? environment["ONETOUCH_SERVER"] ?? "http://127.0.0.1:8780"
        let source: SecretSource
        let origin: String
        if let tokenFile {
            (source, origin) = (.file(tokenFile), "--token-file")
        } else if environment["ONETOUCH_TOKEN"] != nil {
            (source, origin) = (.environment("ONETOUCH_TOKEN"), "ONETOUCH_TOKEN")
        } else if let file = environment["ONETOUCH_TOKEN_FILE"] {
            (source, origin) = (.file(file), "ONETOUCH_TOKEN_FILE")
        } else {
            throw AdminClient.Failure(exitCode: 2, description: "no admin token: set ONETOUCH_TOKEN, ONETOUCH_TOKEN_FILE or --token-file")
        }
        let tokens: [AdminTokens.Entry]
        do { tokens = try AdminTokens.load(source, environment: environment) } catch {
            throw AdminClient.Failure(exitCode: 2, description: "\(origin): \(error)")
        }
        return AdminClient(server: server, token: tokens[0].token)
    }
}

struct OutputOptions: ParsableArguments {
    @Flag(help: "Print stable, machine-readable JSON.")
    var json = false
}

func validateName(_ name: String) throws {
    do { _ = try HostName.validate(name) } catch { throw ValidationError(error.description) }
}

func printJSON(_ data: Data) {
    Output.json(data)
}

func printJSON<T: Encodable>(_ value: T) throws {
    printJSON(try APIDates.encoder().encode(value))
}

extension Step: ExpressibleByArgument {}

// MARK: serve

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the engine and the HTTP API (admin API for the CLI, host API for the VMs).")

    @Option(help: "The YAML configuration file (see docs/configuration.md).")
    var config: String

    func run() async throws { try await run(crashHook: nil) }

    func run(crashHook: (@Sendable (Step, CrashPoint) throws -> Void)?) async throws {
        let environment = ProcessInfo.processInfo.environment
        let configuration = try Configuration.load(file: config)
        let logger = ServeLog.logger(
            level: Logger.Level(rawValue: environment["ONETOUCH_LOG_LEVEL"] ?? "info") ?? .info,
            format: ServeLog.Format(rawValue: configuration.logFormat) ?? .text)
        logger.info(
            "Starting", metadata: ["version": "\(BuildInfo.version)", "commit": "\(BuildInfo.commit)", "config": "\(configuration.file)"])
        try await ServePreflight.check(configuration)
        let metrics = MetricsEndpoint()
        let adapters = try AdapterRegistry.make(
            configuration: configuration, environment: environment, logger: logger, telemetry: metrics.telemetry)
        // One driver: nothing writes the database or the master key before this lock is held.
        let lock: ServeLock
        do { lock = try ServeLock.acquire(database: configuration.database) } catch let error as ServeLock.Held {
            throw AdminClient.Failure(exitCode: 1, description: error.description)
        }
        let app = try OneTouchApplication(
            configuration: configuration, adapters: adapters, environment: environment, logger: logger, crashHook: crashHook,
            metrics: metrics)
        do {
            defer { withExtendedLifetime(lock) {} }
            try await app.run(logger: logger)
        } catch let error as LeaseHeld {
            throw AdminClient.Failure(exitCode: 1, description: error.description)
        }
    }
}

// MARK: config check

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Work with serve's configuration file.", subcommands: [ConfigCheck.self])
}

struct ConfigCheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check a configuration as `onetouch serve` would, without starting anything or writing a file.",
        discussion: """
            Reads the file, the admin tokens, the repository credential, the TLS certificate and every adapter's \
            settings, and looks at the database and the master key, and says what serve would refuse, with \
            serve's own message (exit 2 for the configuration, 1 for the files beside it). The listen address \
            is not bound: a serve running on it is no reason to refuse the file.
            """)

    @Argument(help: "The YAML configuration file.")
    var file: String

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let configuration = try Configuration.load(file: file)
        _ = try OneTouchApplication.loadSecrets(configuration, environment: environment)
        try await ServePreflight.check(configuration, listen: false)
        let adapters = try AdapterRegistry.make(configuration: configuration, environment: environment, logger: Logger(label: "check"))
        let roles = configuration.roles.keys.sorted().joined(separator: ", ")
        let provider = try configuration.provider.requiredString("kind")
        let directory = try configuration.directory.requiredString("kind")
        Output.line(
            "\(file): serve would start with it (provider \(provider), directory \(directory), notifier \(adapters.slack == nil ? "log" : "slack"), roles \(roles), database \(configuration.database))"
        )
    }
}

// MARK: backup

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy the database, consistently, while serve runs (restore: docs/operations.md).",
        discussion: """
            Reads the database named in the configuration (read-only; serve goes on working) and writes a \
            compact, checked copy to FILE, mode 0600, never over an existing file. The master key is not in \
            it: keep a copy of the key too, in another place.
            """)

    @Argument(help: "Where the copy goes; must not exist.")
    var file: String
    @Option(help: "serve's configuration file (for the database path and the master key's).")
    var config: String

    func run() async throws {
        let configuration = try Configuration.load(file: config)
        let summary: DatabaseBackup.Summary
        do { summary = try DatabaseBackup.copy(database: configuration.database, to: file) } catch let failure as DatabaseBackup.Failure {
            throw AdminClient.Failure(exitCode: 1, description: failure.description)
        }
        Output.line(
            "\(file): \(summary.hosts) hosts, schema \(summary.migrations.last ?? "none"), \(summary.bytes) bytes; integrity check ok"
        )
        Output.line("the master key is not in it: keep \(configuration.masterKeyFile) too, stored apart from this copy")
    }
}

// MARK: create

struct Create: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a host and drive it to ready.")

    @Argument(help: "Host name: an RFC 1123 label (web-01) or an FQDN, lower case.")
    var name: String
    @Option(help: "Role, as defined in the server's configuration.")
    var role: String
    @Option(help: "Instance type, instead of the role's.")
    var size: String?
    @Option(name: .customLong("volume-gib"), help: "Data volume size in GiB, instead of the role's.")
    var volumeGiB: Int?
    @Flag(help: "Follow the host until it is ready (exit 0) or failed (exit 1).")
    var wait = false
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        try validateName(name)
        if role.isEmpty { throw ValidationError("--role is empty; give one of the server's roles") }
        if let volumeGiB, !(1...16_384).contains(volumeGiB) {
            throw ValidationError("--volume-gib \(volumeGiB) is out of range; give 1 to 16384")
        }
    }

    func run() async throws {
        let api = try client.client()
        let data = try await api.send(
            .POST, "/v1/admin/hosts", body: HostService.CreateRequest(name: name, role: role, size: size, volumeGiB: volumeGiB))
        let host = try api.decode(HostView.self, data)
        if !wait {
            if output.json {
                printJSON(data)
            } else {
                Output.line("\(host.name): created (\(host.id)); follow it with `onetouch events \(host.name) --follow`")
            }
            return
        }
        let json = output.json
        try await Follow(api: api, name: host.name, json: json).untilSettled(
            orInterrupted: "\(host.name) (\(host.id)) carries on: the server keeps driving it."
        ) { if !json { Output.line("\(host.name): created (\(host.id), role \(host.role))") } }
    }
}

// MARK: status, list, events

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one host.")
    @Argument var name: String
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions

    func validate() throws { try validateName(name) }

    func run() async throws {
        let api = try client.client()
        let data = try await api.get("/v1/admin/hosts/\(AdminClient.escape(name))")
        if output.json { return printJSON(data) }
        let host = try api.decode(HostView.self, data)
        Output.line("\(host.name) (\(host.id))")
        Output.line("  state:    \(host.state)\(host.step.map { " (\($0))" } ?? "")")
        if let reason = host.reason { Output.line("  reason:   \(reason)") }
        Output.line("  role:     \(host.role)   fqdn: \(host.fqdn)   generation: \(host.generation)")
        if let instance = host.instanceId { Output.line("  instance: \(instance)   address: \(host.privateIp ?? "-")") }
        if let volume = host.volumeId { Output.line("  volume:   \(volume)") }
        if host.state == HostState.Kind.ready.rawValue, let data = try? await api.get("/v1/admin/hosts/\(AdminClient.escape(name))/drift"),
            let drift = try? api.decode(DriftView.self, data)
        {
            Output.line(
                "  drift:    \(drift.drift?.rawValue ?? "no report yet")\(drift.since.map { " since \(APIDates.format($0))" } ?? "")")
            Output.line("            " + DriftCommand.summary(drift))
        }
        if let log = host.failureLog {
            let lines = log.split(separator: "\n", omittingEmptySubsequences: false)
            Output.line("  log tail from the host (last \(min(lines.count, Self.logLines)) of \(lines.count) lines; --json has all):")
            for line in lines.suffix(Self.logLines) { Output.block("    \(line)") }
        }
        // Slack's view of the host, when Slack is configured (the route does not exist otherwise).
        if let data = try? await api.get("/v1/admin/hosts/\(AdminClient.escape(name))/announcements"),
            let slack = try? api.decode(AnnouncementsView.self, data)
        {
            for (index, line) in slack.lines.enumerated() { Output.line(index == 0 ? "  slack:    \(line)" : "            \(line)") }
        }
    }

    static let logLines = 40
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List hosts.")
    @Option(help: "Only hosts in this state (pending, running, waiting, ready, failed, paused, destroying, destroyed).")
    var state: HostState.Kind?
    @Option(help: "Only ready hosts in this configuration drift state (in-sync, corrected, failing, silent).")
    var drift: DriftState?
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if let state, drift != nil, state != .ready { throw ValidationError("--drift lists ready hosts; drop --state \(state.rawValue)") }
    }

    func run() async throws {
        let api = try client.client()
        let query = [state.map { "state=\($0.rawValue)" }, drift.map { "drift=\($0.rawValue)" }].compactMap { $0 }
        let data = try await api.get("/v1/admin/hosts" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")))
        if output.json { return printJSON(data) }
        let hosts = try api.decode([HostView].self, data)
        if hosts.isEmpty { return Output.line("no hosts") }
        for host in hosts {
            let state = host.state + (host.step.map { "(\($0))" } ?? "") + (host.drift.map { " \($0.rawValue)" } ?? "")
            Output.line(
                "\(host.name.padding(toLength: max(24, host.name.count), withPad: " ", startingAt: 0)) \(state.padding(toLength: 24, withPad: " ", startingAt: 0)) \(host.role.padding(toLength: 12, withPad: " ", startingAt: 0)) \(host.instanceId ?? "-")"
            )
        }
    }
}

extension HostState.Kind: ExpressibleByArgument {}

struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a host's history of transitions.")
    @Argument var name: String
    @Flag(help: "Keep following new events until the host settles.")
    var follow = false
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions

    func validate() throws { try validateName(name) }

    func run() async throws {
        let api = try client.client()
        if follow {
            return try await Follow(api: api, name: name, json: output.json, fromStart: true).untilSettled(
                orInterrupted: "\(name) carries on: the server keeps driving it.")
        }
        let data = try await api.get("/v1/admin/hosts/\(AdminClient.escape(name))/events")
        if output.json { return printJSON(data) }
        for event in try api.decode([EventView].self, data) { Output.line(Follow.line(event, duration: nil)) }
    }
}

// MARK: resume, retry, destroy, render

struct Resume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Continue a failed or paused host from the step where it stopped.")
    @Argument var name: String?
    @Flag(name: .customLong("all-failed"), help: "Resume every failed host.")
    var allFailed = false
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        switch (name, allFailed) {
        case (nil, false): throw ValidationError("give a host name or --all-failed")
        case (.some, true): throw ValidationError("give a host name or --all-failed, not both")
        case (let name?, false): try validateName(name)
        default: break
        }
    }

    func run() async throws {
        let api = try client.client()
        if allFailed {
            let data = try await api.send(.POST, "/v1/admin/resume-failed", body: Optional<ErrorBody>.none)
            if output.json { return printJSON(data) }
            let hosts = try api.decode([HostView].self, data)
            if hosts.isEmpty { Output.line("no failed hosts") }
            for host in hosts { Output.line("\(host.name): resumed at \(host.step ?? "-")") }
        } else if let name {
            let data = try await api.send(.POST, "/v1/admin/hosts/\(AdminClient.escape(name))/resume", body: Optional<ErrorBody>.none)
            if output.json { return printJSON(data) }
            let host = try api.decode(HostView.self, data)
            Output.line("\(host.name): resumed at \(host.step ?? "-")")
        }
    }
}

struct Retry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a host again from an earlier step.")
    @Argument var name: String
    @Option(help: "The step to start from: provision, preregister, bootstrap, attach-volume, config-pull, complete.")
    var from: Step
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        try validateName(name)
        if from.isTeardown { throw ValidationError("\(from.rawValue) is a teardown step; use `onetouch destroy \(name)`") }
    }

    func run() async throws {
        let api = try client.client()
        let data = try await api.send(.POST, "/v1/admin/hosts/\(AdminClient.escape(name))/retry", body: RetryRequest(from: from))
        if output.json { return printJSON(data) }
        let host = try api.decode(HostView.self, data)
        Output.line("\(host.name): running again from \(host.step ?? from.rawValue)")
    }
}

struct Destroy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Tear a host down: directory entry, instance, volume.")
    @Argument var name: String
    @Flag(name: .customLong("keep-volume"), help: "Keep the data volume.")
    var keepVolume = false
    @Flag(help: "Follow the teardown until it is done.")
    var wait = false
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions

    func validate() throws { try validateName(name) }

    func run() async throws {
        let api = try client.client()
        let data = try await api.send(
            .POST, "/v1/admin/hosts/\(AdminClient.escape(name))/destroy", body: DestroyRequest(keepVolume: keepVolume))
        if !wait {
            if output.json { return printJSON(data) }
            return Output.line("\(name): destroying")
        }
        try await Follow(api: api, name: name, json: output.json).untilSettled(
            orInterrupted: "The teardown of \(name) carries on: the server keeps driving it.")
    }
}

struct Render: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the user-data a host gets, with secrets redacted.")
    @Argument var name: String
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions

    func validate() throws { try validateName(name) }

    /// `render --json`: the user-data as one JSON string, with the host it is for.
    struct Rendered: Encodable {
        var name: String
        var userData: String
    }

    func run() async throws {
        let data = try await client.client().get("/v1/admin/hosts/\(AdminClient.escape(name))/user-data")
        if output.json { return try printJSON(Rendered(name: name, userData: String(decoding: data, as: UTF8.self))) }
        Output.raw(data)
    }
}

struct Reconcile: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List cloud resources tagged as onetouch's that no live host owns, and hosts whose instance vanished.")
    @Flag(help: "Remove the orphans (after printing them) whose host this database knows.")
    var fix = false
    @Flag(
        name: .customLong("include-unknown-hosts"),
        help:
            "With --fix, also remove orphans of hosts this database has never seen (after a restore from backup, those may be hosts created since)."
    )
    var includeUnknownHosts = false
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if includeUnknownHosts && !fix { throw ValidationError("--include-unknown-hosts only goes with --fix") }
    }

    func run() async throws {
        let api = try client.client()
        let data =
            fix
            ? try await api.send(.POST, "/v1/admin/reconcile", body: ReconcileRequest(includeUnknownHosts: includeUnknownHosts))
            : try await api.get("/v1/admin/reconcile")
        if output.json { return printJSON(data) }
        let report = try api.decode(ReconcileReport.self, data)
        if report.orphans.isEmpty && report.vanished.isEmpty {
            return Output.line("nothing to reconcile: every managed resource has its host")
        }
        for orphan in report.orphans { Output.line("orphan \(orphan.kind) \(orphan.id): \(orphan.why)") }
        for gone in report.vanished {
            Output.line("\(gone.host): its instance \(gone.instanceId) is gone; run `onetouch retry \(gone.host) --from provision`")
        }
        if fix { Output.line("removed: \(report.removed.isEmpty ? "nothing" : report.removed.joined(separator: ", "))") }
        if !report.keptUnknown.isEmpty {
            Output.line(
                "kept: \(report.keptUnknown.joined(separator: ", ")): their hosts are unknown to this database; if it was restored from a backup, they may belong to hosts created since. Once you are sure, run `onetouch reconcile --fix --include-unknown-hosts`"
            )
        }
        if !fix && !report.orphans.isEmpty { Output.line("run `onetouch reconcile --fix` to remove the orphans") }
    }
}
