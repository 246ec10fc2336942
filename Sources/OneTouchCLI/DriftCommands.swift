import ArgumentParser
import Foundation
import OneTouchCore

// MARK: drift, check, rotate-report-credential

struct DriftCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drift",
        abstract:
            "List ready hosts by configuration drift (in-sync, corrected, failing, silent), or compare the cloud with the configuration.",
        discussion: """
            Hosts report every configuration run (ansible-pull on their timer). `--cloud` looks at every ready host's \
            instance and volumes now and lists what differs from the configuration; nothing is changed in the cloud.
            """)
    @Flag(help: "Compare every ready host's instance and volumes with what its role and the configuration declare, now.")
    var cloud = false
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let api = try client.client()
        if cloud {
            let data = try await api.send(.POST, "/v1/admin/drift/cloud", body: Optional<ErrorBody>.none)
            if output.json { return printJSON(data) }
            let views = try api.decode([DriftService.CloudView].self, data)
            let differing = views.filter { !$0.differences.isEmpty }
            Output.line("\(views.count) ready hosts compared with the configuration; \(differing.count) differ")
            for view in differing {
                Output.line("\(view.name) (\(view.instanceId ?? "-")):")
                for difference in view.differences {
                    Output.line("  \(difference.field): expected \(difference.expected), actual \(difference.actual)")
                }
            }
            return
        }
        let data = try await api.get("/v1/admin/drift")
        if output.json { return printJSON(data) }
        let views = try api.decode([DriftView].self, data)
        if views.isEmpty { return Output.line("no ready hosts") }
        let order: [DriftState?] = [.failing, .silent, .corrected, .inSync, nil]
        for state in order {
            let group = views.filter { $0.drift == state }
            guard !group.isEmpty else { continue }
            Output.line("\(state?.rawValue ?? "no report yet") (\(group.count)):")
            for view in group { Output.line("  " + Self.line(view)) }
        }
    }

    static func line(_ view: DriftView) -> String {
        view.name.padding(toLength: max(24, view.name.count), withPad: " ", startingAt: 0) + "  " + summary(view)
    }

    /// The last run (or why there is none), the last check, and what differs in the cloud.
    static func summary(_ view: DriftView) -> String {
        var parts: [String] = []
        if let run = view.lastRun {
            parts.append("commit \(run.commit.map { String($0.prefix(12)) } ?? "-")")
            parts.append("last run \(APIDates.format(run.at))")
            if !run.changedTasks.isEmpty { parts.append("changed: \(run.changedTasks.joined(separator: ", "))") }
            if let failed = run.failedTasks.first { parts.append("failed: \(failed.task): \(failed.message)") }
        } else if let last = view.lastReportAt {
            parts.append("no run reported since \(APIDates.format(last))")
        } else {
            parts.append(
                "cannot report: set up before drift reporting; `onetouch retry \(view.name) --from provision` gives it a credential")
        }
        if let check = view.lastCheck {
            parts.append(
                check.changedTasks.isEmpty
                    ? "check \(APIDates.format(check.at)): nothing would change"
                    : "check \(APIDates.format(check.at)) would change: \(check.changedTasks.joined(separator: ", "))")
        }
        if view.checkRequested { parts.append("check requested") }
        if !view.cloud.isEmpty { parts.append("cloud: \(view.cloud.map(\.field).joined(separator: ", ")) differ") }
        return parts.joined(separator: "  ")
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask hosts to run their next configuration pull in check mode (--check --diff) and report what would change.",
        discussion: """
            Hosts pick the request up with the answer to their next report (there is no connection to a host), so the \
            check runs at the pull after that. `onetouch drift` shows the result with the tasks that would change.
            """)
    @Argument(help: "Host names.") var names: [String] = []
    @Option(help: "Every ready host of this role.") var role: String?
    @Flag(help: "Every ready host.") var all = false
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        let given = (names.isEmpty ? 0 : 1) + (role == nil ? 0 : 1) + (all ? 1 : 0)
        guard given == 1 else { throw ValidationError("give host names, --role ROLE or --all (one of them)") }
        for name in names { try validateName(name) }
    }

    func run() async throws {
        let api = try client.client()
        let data = try await api.send(.POST, "/v1/admin/check", body: CheckRequest(names: names, role: role, all: all))
        if output.json { return printJSON(data) }
        let answer = try api.decode(CheckAnswer.self, data)
        Output.line(
            "check mode requested for \(answer.hosts.count) host\(answer.hosts.count == 1 ? "" : "s"): \(answer.hosts.joined(separator: ", "))"
        )
        Output.line("they run it at the pull after their next report; see `onetouch drift`")
    }
}

struct RotateReportCredential: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate-report-credential",
        abstract: "Replace a host's report credential: its next report gets a new one, and the old one stops once the new one is used.")
    @Argument var name: String
    @OptionGroup var client: ClientOptions

    func validate() throws { try validateName(name) }

    func run() async throws {
        let api = try client.client()
        _ = try await api.send(
            .POST, "/v1/admin/hosts/\(AdminClient.escape(name))/report-credential/rotate", body: Optional<ErrorBody>.none)
        Output.line("\(name): its next report gets a new credential")
    }
}

extension DriftState: ExpressibleByArgument {}
