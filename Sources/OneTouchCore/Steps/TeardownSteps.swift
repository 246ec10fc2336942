import Foundation

/// Removes the host from the Kerberos directory, but only an entry this host made (its ledger or
/// facts say pre-registration succeeded) or was allowed to replace: a name some other machine
/// enrolled with is left alone. Absent is success. (The engine wipes the one-time password when the
/// host is destroyed.)
struct DeregisterStep: HostStep {
    let step = Step.deregister

    func run(_ context: StepContext) async throws -> StepOutcome {
        let made = try !context.services.store.resources(hostID: context.hostID, kind: .directoryEntry).isEmpty
        guard made || context.facts.directoryBaseline != nil || context.facts.replaceDirectoryEntry == true else {
            context.services.logger.notice(
                "Left the directory entry alone: this host never pre-registered it",
                metadata: ["host.id": "\(context.hostID)", "fqdn": "\(context.spec.fqdn)"])
            return .done(context.facts)
        }
        try await context.services.directory.remove(context.directoryHost)
        return .done(context.facts)
    }
}

/// What teardown looks for: the ids the host's facts and ledger name, and those the cloud finds by the
/// host's tag (and, for instances, by every launch key the host used).
private func known(_ kind: HostResource.Kind, current: String?, found: [String], _ context: StepContext) throws -> (
    ids: [String], ledger: [HostResource]
) {
    let ledger = try context.services.store.resources(hostID: context.hostID, kind: kind)
    var ids = Set(found).union(ledger.map(\.id))
    if let current { ids.insert(current) }
    return (ids.sorted(), ledger)
}

/// Ids the ledger recorded less than `wait` ago that the cloud has not listed yet, in this teardown
/// or now: EC2 lists a new resource late, and one that is not listed yet is still there to remove.
/// Updates `facts.listedAtTeardown` with what the cloud listed now.
private func unlisted(
    _ ledger: [HostResource], shown: [String], facts: inout HostFacts, _ context: StepContext, wait: TimeInterval
) -> [String] {
    let listed = Set(facts.listedAtTeardown ?? []).union(shown)
    if listed != Set(facts.listedAtTeardown ?? []) { facts.listedAtTeardown = listed.sorted() }
    return ledger.filter { context.now.timeIntervalSince($0.recordedAt) < wait && !listed.contains($0.id) }.map(\.id)
}

/// Terminates every instance of the host (any generation) and waits until they are gone.
struct TerminateStep: HostStep {
    let step = Step.terminate

    func run(_ context: StepContext) async throws -> StepOutcome {
        let cloud = context.services.cloud
        let launchKeys = (1...max(1, context.host.generation)).map {
            Engine.idempotencyKey(hostID: context.hostID, step: .provision, generation: $0)
        }
        let found = try await cloud.instances(hostIDs: [context.hostID]).map(\.id) + cloud.instances(launchKeys: launchKeys).map(\.id)
        let (ids, ledger) = try known(.instance, current: context.facts.instanceID, found: found, context)
        let shown = try await cloud.instances(ids: ids)
        var facts = context.facts
        let unseen = unlisted(ledger, shown: shown.map(\.id), facts: &facts, context, wait: PollLimit.instancePending.seconds)
        let live = shown.filter { $0.state != .terminated }
        if live.isEmpty && unseen.isEmpty { return .done(facts) }
        if let waited = PollLimit.instanceShuttingDown.exceeded(context) {
            let states = live.map { "\($0.id) \($0.state.rawValue)" } + unseen.map { "\($0) not listed by the cloud yet" }
            throw StepError.permanent(
                "instances are not terminated \(waited) after the first request: \(states.joined(separator: ", "))",
                hint: "look at them in the EC2 console, then run `onetouch resume \(context.spec.name)`")
        }
        for instance in live where instance.state != .shuttingDown {
            try await cloud.terminate(instanceID: instance.id)
        }
        return .poll(facts, after: .seconds(1))
    }
}

/// Deletes the host's data volumes unless `--keep-volume` was asked for, then announces the teardown.
struct DeleteVolumeStep: HostStep {
    let step = Step.deleteVolume

    func run(_ context: StepContext) async throws -> StepOutcome {
        var facts = context.facts
        let cloud = context.services.cloud
        if !context.host.keepVolume {
            let found = try await cloud.volumes(hostIDs: [context.hostID])
                .filter { $0.tags[ManagedTags.volumeRole] == ManagedTags.dataVolume }.map(\.id)
            let (ids, ledger) = try known(.volume, current: facts.volumeID, found: found, context)
            let shown = try await cloud.volumes(ids: ids)
            let volumes = shown.filter { $0.state != .deleted && $0.state != .deleting }
            // A volume still not listed a minute after its creation was rolled back (as attach-volume judges).
            let unseen = unlisted(ledger, shown: shown.map(\.id), facts: &facts, context, wait: AttachVolumeStep.vanishedAfter)
            if !unseen.isEmpty {
                // Created moments ago and not listed yet: wait until the cloud shows them, then delete.
                return .poll(facts, after: .seconds(1))
            }
            let attached = volumes.filter { $0.attachedTo != nil }
            if !attached.isEmpty {
                // Still detaching from the terminated instance.
                if let waited = PollLimit.volumeDetaching.exceeded(context) {
                    let which = attached.map { "\($0.id) (attached to \($0.attachedTo ?? "?"))" }.joined(separator: ", ")
                    throw StepError.permanent(
                        "data volumes are still attached \(waited) after their instance was terminated: \(which)",
                        hint: "detach them (force if need be), then run `onetouch resume \(context.spec.name)`")
                }
                return .poll(facts, after: .seconds(1))
            }
            // A volume the cloud still calls in use (it is detaching) comes back as a transient error.
            for volume in volumes { try await cloud.deleteVolume(volumeID: volume.id) }
        }
        if facts.destroyAnnounced != true {
            try await context.services.notifier.announce(
                Announcement(
                    kind: .destroyed, hostName: context.spec.fqdn, hostID: context.hostID, role: context.spec.role,
                    text: "\(context.spec.fqdn) was destroyed" + (context.host.keepVolume ? " (its data volume was kept)" : ""),
                    idempotencyKey: "\(context.hostID)-destroyed"))
            facts.destroyAnnounced = true
        }
        return .done(facts)
    }
}
