import Foundation

/// Creates the encrypted data volume in the instance's zone and attaches it. Idempotent by the
/// volume key and a tag look-up; when resumed it describes the attachment before attaching. Done
/// once the attach call succeeded: the host waits for the device, and `complete` verifies it.
struct AttachVolumeStep: HostStep {
    let step = Step.attachVolume
    /// How long a volume this host created may stay invisible before it counts as rolled back.
    static let vanishedAfter: TimeInterval = 60

    /// Creates the host's data volume (or finds it again, by its key) and records it in `facts`.
    /// `BootstrapStep` calls this too, so the volume is made while the guest boots. The key is this
    /// step's (a retried step asks under a new round: EC2 refuses a key whose volume it rolled back).
    static func createVolume(_ facts: inout HostFacts, _ context: StepContext) async throws -> Volume {
        let key =
            Engine.idempotencyKey(hostID: context.hostID, step: .attachVolume, generation: context.host.generation)
            + (facts.volumeRound.map { "-r\($0)" } ?? "")
        let volume = try await context.services.cloud.createVolume(
            VolumeRequest(
                hostID: context.hostID, zone: facts.zone, sizeGiB: context.spec.volumeGiB, idempotencyKey: key,
                tags: context.tags.merging([ManagedTags.volumeRole: ManagedTags.dataVolume]) { $1 }))
        facts.volumeID = volume.id
        facts.volumeCreatedAt = context.now
        facts.volumeKeyID = volume.keyID
        context.services.logger.info("Created data volume", metadata: ["host.id": "\(context.hostID)", "volume": "\(volume.id)"])
        return volume
    }

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
                let volume = try await Self.createVolume(&facts, context)
                if volume.state == .available && volume.encrypted {
                    // Ready at once (the usual case): attach without describing it first. The host
                    // waits for the device, and `complete` verifies the attachment.
                    facts.volumeEncrypted = true
                    try await cloud.attachVolume(volumeID: volume.id, instanceID: instanceID)
                    facts.volumeDevice = cloud.attachmentDevice
                    return .done(facts)
                }
            }
            return .poll(facts, after: .milliseconds(200))
        }
        guard let volumeID = facts.volumeID else { return .poll(facts, after: .seconds(1)) }
        guard let volume = try await cloud.volumes(ids: [volumeID]).first else {
            let created = facts.volumeCreatedAt ?? context.attempt.startedAt
            let invisible = context.now.timeIntervalSince(created)
            if invisible < Self.vanishedAfter { return .poll(facts, after: .seconds(2)) }  // just created: not visible yet
            // EBS accepts CreateVolume, checks the encryption key afterwards, and rolls the volume back
            // if it cannot use it: no error code, the volume is simply gone.
            throw StepError.permanent(
                "data volume \(volumeID) was accepted but is gone \(Int(invisible))s later: the cloud rolls a volume back when it cannot use its encryption key (KMS key \(facts.volumeKeyID ?? "the provider's default")): it is disabled, pending deletion, missing, or these credentials may not use it (kms:CreateGrant, kms:GenerateDataKeyWithoutPlaintext, kms:DescribeKey)",
                hint: "make the key usable, then run `onetouch retry \(context.spec.name) --from attach-volume`")
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
            facts.volumeDevice = cloud.attachmentDevice
            return .done(facts)
        case (.inUse, _):
            throw StepError.permanent(
                "volume \(volumeID) is attached to another instance (\(volume.attachedTo ?? "unknown"))",
                hint: "detach it, then run `onetouch resume \(context.spec.name)`")
        case (.available, _):
            try await cloud.attachVolume(volumeID: volumeID, instanceID: instanceID)
            facts.volumeDevice = cloud.attachmentDevice
            return .done(facts)
        case (.creating, _):
            if let waited = PollLimit.volumeCreating.exceeded(context) {
                throw StepError.permanent(
                    "volume \(volumeID) is still creating after \(waited)",
                    hint:
                        "look at the volume in the EC2 console, delete it, then run `onetouch retry \(context.spec.name) --from attach-volume`"
                )
            }
            return .poll(facts, after: .seconds(1))
        case (.deleting, _), (.deleted, _), (.error, _):
            throw StepError.permanent(
                "volume \(volumeID) is \(volume.state.rawValue)",
                hint: "run `onetouch retry \(context.spec.name) --from attach-volume` after removing it from the host's record")
        }
    }
}
