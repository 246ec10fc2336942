import Foundation

/// Verifies enrollment and the volume and announces the host as ready. Every check is a read; the
/// announcement is recorded in the facts once sent; the engine wipes the one-time password in the
/// transaction that makes the host ready.
struct CompleteStep: HostStep {
    let step = Step.complete

    func run(_ context: StepContext) async throws -> StepOutcome {
        var facts = context.facts
        let services = context.services
        let name = context.spec.name
        if facts.enrolled != true {
            guard let baseline = facts.directoryBaseline else {
                throw StepError.permanent("no pre-registration is recorded", hint: "run `onetouch retry \(name) --from preregister`")
            }
            guard try await services.directory.isEnrolled(context.directoryHost, baseline: baseline) else {
                // The directory may lag behind the host (replication); retried within the step's budget.
                throw StepError.transient("\(context.spec.fqdn) reported configured but the directory does not show it enrolled yet")
            }
            facts.enrolled = true
        }
        guard
            try services.store.latestReport(
                hostID: context.hostID, stage: .volumeMounted, after: context.reportFloor(for: .volumeMounted)) != nil
        else {
            throw StepError.permanent(
                "the host never reported its data volume mounted",
                hint: "check /var/log/onetouch-bootstrap.log on the host, then run `onetouch retry \(name) --from attach-volume`")
        }
        if let volumeID = facts.volumeID, let instanceID = facts.instanceID {
            let volume = try await services.cloud.volumes(ids: [volumeID]).first
            guard let volume, volume.encrypted, volume.attachedTo == instanceID else {
                throw StepError.permanent(
                    "volume \(volumeID) is no longer attached to \(instanceID) and encrypted",
                    hint: "run `onetouch retry \(name) --from attach-volume`")
            }
        }
        if facts.readyAnnounced != true {
            let elapsed = Int(context.now.timeIntervalSince(context.host.createdAt))
            try await services.notifier.announce(
                Announcement(
                    kind: .ready, hostName: context.spec.fqdn, hostID: context.hostID, role: context.spec.role,
                    text:
                        "\(context.spec.fqdn) is ready (role \(context.spec.role), \(facts.privateIP ?? "no address")) after \(elapsed / 60)m\(elapsed % 60)s",
                    idempotencyKey: "\(context.hostID)-ready-g\(context.host.generation)"))
            facts.readyAnnounced = true
        }
        return .done(facts)
    }
}
