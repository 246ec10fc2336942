import Foundation

/// Removes the host from the Kerberos directory. Absent is success. (The engine wipes the one-time
/// password when the host is destroyed.)
struct DeregisterStep: HostStep {
    let step = Step.deregister

    func run(_ context: StepContext) async throws -> StepOutcome {
        try await context.services.directory.remove(context.directoryHost)
        return .done(context.facts)
    }
}

/// Terminates every instance of the host (any generation) and waits until they are gone.
struct TerminateStep: HostStep {
    let step = Step.terminate

    func run(_ context: StepContext) async throws -> StepOutcome {
        let cloud = context.services.cloud
        var ids = Set(try await cloud.instances(hostIDs: [context.hostID]).map(\.id))
        if let id = context.facts.instanceID { ids.insert(id) }
        let live = try await cloud.instances(ids: Array(ids)).filter { $0.state != .terminated }
        if live.isEmpty { return .done(context.facts) }
        if let waited = PollLimit.instanceShuttingDown.exceeded(context) {
            let states = live.map { "\($0.id) \($0.state.rawValue)" }.joined(separator: ", ")
            throw StepError.permanent(
                "instances are not terminated \(waited) after the first request: \(states)",
                hint: "look at them in the EC2 console, then run `onetouch resume \(context.spec.name)`")
        }
        for instance in live where instance.state != .shuttingDown {
            try await cloud.terminate(instanceID: instance.id)
        }
        return .poll(context.facts, after: .seconds(1))
    }
}

/// Deletes the host's data volumes unless `--keep-volume` was asked for, then announces the teardown.
struct DeleteVolumeStep: HostStep {
    let step = Step.deleteVolume

    func run(_ context: StepContext) async throws -> StepOutcome {
        var facts = context.facts
        let cloud = context.services.cloud
        if !context.host.keepVolume {
            var ids = Set(
                try await cloud.volumes(hostIDs: [context.hostID]).filter { $0.tags[ManagedTags.volumeRole] == ManagedTags.dataVolume }
                    .map(\.id))
            if let id = facts.volumeID { ids.insert(id) }
            let volumes = try await cloud.volumes(ids: Array(ids)).filter { $0.state != .deleted && $0.state != .deleting }
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
