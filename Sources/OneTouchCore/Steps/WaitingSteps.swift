import Foundation

/// Waits for the host to report `booted` (cloud-init ran the bootstrap script).
struct BootstrapStep: HostStep {
    let step = Step.bootstrap

    func run(_ context: StepContext) async throws -> StepOutcome {
        try HostReports.checkForFailure(context, during: step)
        let booted = try context.services.store.latestReport(
            hostID: context.hostID, stage: .booted, after: context.host.reportFloor(for: .booted))
        return booted == nil ? .wait(context.facts) : .done(context.facts)
    }
}

/// Waits for the host to report `configured` (git clone + ansible-pull + Kerberos enrollment).
struct ConfigPullStep: HostStep {
    let step = Step.configPull

    func run(_ context: StepContext) async throws -> StepOutcome {
        try HostReports.checkForFailure(context, during: step)
        guard
            let report = try context.services.store.latestReport(
                hostID: context.hostID, stage: .configured, after: context.host.reportFloor(for: .configured))
        else { return .wait(context.facts) }
        guard report.exitStatus == 0 else {
            throw StepError.permanent(
                "the configuration pull on \(context.spec.fqdn) exited with status \(report.exitStatus.map(String.init) ?? "unknown")",
                hint: "fix the playbook \(context.spec.playbook), then run `onetouch retry \(context.spec.name) --from config-pull`")
        }
        return .done(context.facts)
    }
}

enum HostReports {
    /// A `failed` report from the host ends the waiting step with the host's own words.
    static func checkForFailure(_ context: StepContext, during step: Step) throws {
        guard
            let failed = try context.services.store.latestReport(
                hostID: context.hostID, stage: .failed, after: context.host.reportFloor(for: .failed))
        else { return }
        let tail = (failed.detail ?? "").split(separator: "\n").suffix(3).joined(separator: " | ")
        throw StepError.permanent(
            "the host reported a failure during \(step.rawValue)"
                + (failed.exitStatus.map { " (exit status \($0))" } ?? "") + (tail.isEmpty ? "" : ": \(tail.prefix(300))"),
            hint:
                "`onetouch status \(context.spec.name)` shows its log tail; fix the cause, then run `onetouch retry \(context.spec.name) --from provision`"
        )
    }
}
