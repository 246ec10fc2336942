import Foundation

/// Creates the encrypted data volume in the instance's zone and attaches it. Idempotent by the
/// volume key and a tag look-up; when resumed it describes the attachment before attaching. Done
/// once the attach call succeeded: the host waits for the device, and `complete` verifies it.
struct AttachVolumeStep: HostStep {
    let step = Step.attachVolume

    func run(_ context: StepContext) async throws -> StepOutcome {
        var facts = context.facts
        let cloud = context.services.cloud
        guard let instanceID = facts.instanceID else {
            throw StepError.permanent(
                "no instance is recorded for this host",
                hint: "run `onetouch retry \(context.spec.name) --from provision`")
        }
        if facts.volumeID == nil {
            let generation = String(context.host.generation)
            let leftovers = context.mayHaveRunBefore ? try await cloud.volumes(hostIDs: [context.hostID]) : []
            if let tagged = leftovers.first(where: {
                $0.tags[ManagedTags.volumeRole] == ManagedTags.dataVolume && $0.tags["onetouch:generation"] == generation
                    && $0.state != .deleting && $0.state != .deleted
            }) {
                facts.volumeID = tagged.id
            } else {
                let volume = try await cloud.createVolume(
                    VolumeRequest(
                        hostID: context.hostID, zone: facts.zone, sizeGiB: context.spec.volumeGiB,
                        idempotencyKey: context.idempotencyKey,
                        tags: context.tags.merging([ManagedTags.volumeRole: ManagedTags.dataVolume]) { $1 }))
                facts.volumeID = volume.id
                context.services.logger.info(
                    "Created data volume", metadata: ["host.id": "\(context.hostID)", "volume": "\(volume.id)"])
                if volume.state == .available && volume.encrypted {
                    // Ready at once (the usual case): attach without describing it first. The host
                    // waits for the device, and `complete` verifies the attachment.
                    facts.volumeEncrypted = true
                    try await cloud.attachVolume(volumeID: volume.id, instanceID: instanceID)
                    return .done(facts)
                }
            }
            return .poll(facts, after: .milliseconds(200))
        }
        guard let volumeID = facts.volumeID else { return .poll(facts, after: .seconds(1)) }
        guard let volume = try await cloud.volumes(ids: [volumeID]).first else {
            return .poll(facts, after: .seconds(2))  // just created: not visible yet
        }
        guard volume.encrypted else {
            throw StepError.permanent(
                "volume \(volumeID) is not encrypted",
                hint:
                    "check the provider's encryption key settings, delete the volume, then run `onetouch retry \(context.spec.name) --from attach-volume`"
            )
        }
        facts.volumeEncrypted = true
        switch (volume.state, volume.attachedTo) {
        case (.inUse, instanceID?) where volume.attachedTo == instanceID:
            return .done(facts)
        case (.inUse, _):
            throw StepError.permanent(
                "volume \(volumeID) is attached to another instance (\(volume.attachedTo ?? "unknown"))",
                hint: "detach it, then run `onetouch resume \(context.spec.name)`")
        case (.available, _):
            try await cloud.attachVolume(volumeID: volumeID, instanceID: instanceID)
            return .done(facts)
        case (.creating, _):
            return .poll(facts, after: .seconds(1))
        case (.deleting, _), (.deleted, _), (.error, _):
            throw StepError.permanent(
                "volume \(volumeID) is \(volume.state.rawValue)",
                hint: "run `onetouch retry \(context.spec.name) --from attach-volume` after removing it from the host's record")
        }
    }
}
