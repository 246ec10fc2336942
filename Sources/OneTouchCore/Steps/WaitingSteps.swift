import Foundation

/// Waits for the host to report `booted` (cloud-init ran the bootstrap script), making its data
/// volume meanwhile.
struct BootstrapStep: HostStep {
    let step = Step.bootstrap

    func run(_ context: StepContext) async throws -> StepOutcome {
        var facts = context.facts
        if facts.volumeID == nil, facts.instanceID != nil {
            // Make the data volume while the guest boots, so `attach-volume` only attaches it and the
            // guest does not wait for a volume to be created. An error here is not the boot's: the
            // attach step creates the volume itself (same key) and reports what is wrong.
            do { _ = try await AttachVolumeStep.createVolume(&facts, context) } catch {
                if Task.isCancelled || error is CancellationError { throw CancellationError() }
                context.services.logger.notice(
                    "Could not prepare the data volume during boot; attach-volume will make it",
                    metadata: ["host.id": "\(context.hostID)", "error": "\(error)"])
            }
        }
        let booted = try HostReports.latest(.booted, context, during: step)
        return booted == nil ? .wait(facts) : .done(facts)
    }
}

/// Waits for the host to report `configured` (git clone + ansible-pull + Kerberos enrollment).
struct ConfigPullStep: HostStep {
    let step = Step.configPull

    func run(_ context: StepContext) async throws -> StepOutcome {
        guard let report = try HostReports.latest(.configured, context, during: step) else { return .wait(context.facts) }
        guard report.exitStatus == 0 else {
            throw StepError.permanent(
                "the configuration pull on \(context.spec.fqdn) exited with status \(report.exitStatus.map(String.init) ?? "unknown")",
                hint: "fix the playbook \(context.spec.playbook), then run `onetouch retry \(context.spec.name) --from config-pull`")
        }
        return .done(context.facts)
    }
}

enum HostReports {
    /// Where to run again after the host's own stage failed: the host picks a retried step up by
    /// itself (it polls `/task`), so the VM is kept unless the stage needs a new one-time password.
    static func retryStep(after stage: ReportRecord.FailedStage?) -> Step {
        switch stage {
        case .enrollment: .preregister
        case .packages, .volume, .configPull: .configPull
        case nil: .provision
        }
    }

    /// The newest report of `stage` (one read, with the failure check): a `failed` report from the
    /// host ends the waiting step with the host's own words.
    static func latest(_ stage: ReportRecord.Stage, _ context: StepContext, during step: Step) throws -> ReportRecord? {
        let reports = try context.services.store.latestReports(
            hostID: context.hostID,
            after: [stage: context.reportFloor(for: stage), .failed: context.reportFloor(for: .failed)])
        if let failed = reports[.failed] {
            let tail = (failed.detail ?? "").split(separator: "\n").suffix(3).joined(separator: " | ")
            let what = failed.failedStage.map { "\($0.phrase) failed on the host" } ?? "the host reported a failure during \(step.rawValue)"
            throw StepError.permanent(
                what + (failed.exitStatus.map { " (exit status \($0))" } ?? "") + (tail.isEmpty ? "" : ": \(tail.prefix(300))"),
                hint: "`onetouch status \(context.spec.name)` shows its log tail; fix the cause, then run "
                    + "`onetouch retry \(context.spec.name) --from \(Self.retryStep(after: failed.failedStage).rawValue)`")
        }
        return reports[stage]
    }
}
