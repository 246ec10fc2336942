import Foundation
import OneTouchCore

/// Where and how onetouch launches on EC2 (the `provider:` section with `kind: ec2`).
public struct EC2LaunchSettings: Sendable, Equatable {
    public var imageID: String
    public var subnetID: String?
    public var securityGroupIDs: [String]
    public var instanceProfile: RunInstanceRequest.InstanceProfile?
    /// The KMS key every data volume is encrypted with; checked after creation.
    public var kmsKeyID: String?
    /// Zone for data volumes when the instance does not say (it normally does).
    public var availabilityZone: String?
    public var volumeType: String = "gp3"
    public var device: String = "/dev/sdf"
    public var metadataHopLimit: Int = 1
    /// Cloud drift: the root volume must be encrypted (true), must not be (false), or is not looked at
    /// (nil; the AMI and the account's EBS default decide it at launch).
    public var rootVolumeEncrypted: Bool?

    public init(
        imageID: String, subnetID: String? = nil, securityGroupIDs: [String] = [],
        instanceProfile: RunInstanceRequest.InstanceProfile? = nil, kmsKeyID: String? = nil, availabilityZone: String? = nil
    ) {
        self.imageID = imageID
        self.subnetID = subnetID
        self.securityGroupIDs = securityGroupIDs
        self.instanceProfile = instanceProfile
        self.kmsKeyID = kmsKeyID
        self.availabilityZone = availabilityZone
    }
}

/// The EC2 cloud: instances and encrypted EBS data volumes through the Query API.
public struct EC2CloudProvider: CloudProvider {
    let client: EC2Client
    let settings: EC2LaunchSettings

    public init(client: EC2Client, settings: EC2LaunchSettings) {
        self.client = client
        self.settings = settings
    }

    public func launch(_ request: LaunchRequest) async throws -> Instance {
        let tags = request.tags.sorted { $0.key < $1.key }.map { EC2Tag($0.key, $0.value) }
        let run = RunInstanceRequest(
            imageId: settings.imageID, instanceType: request.instanceType, subnetId: settings.subnetID,
            securityGroupIds: settings.securityGroupIDs, instanceProfile: settings.instanceProfile, userData: request.userData,
            metadataHopLimit: settings.metadataHopLimit, instanceTags: tags, volumeTags: tags,
            clientToken: request.idempotencyKey)
        do {
            return Self.instance(try await call("launch \(request.hostName)") { try await client.runInstance(run) })
        } catch let error as EC2Error where error.kind == .idempotentInstanceTerminated {
            throw LaunchKeySpent(error.description)
        }
    }

    public func instances(ids: [String]) async throws -> [Instance] {
        guard !ids.isEmpty else { return [] }
        // A filter, not InstanceId.N: unknown ids are simply absent instead of failing the call.
        return try await call("describe instances") {
            try await client.describeAllInstances(filters: [EC2Filter("instance-id", ids)])
        }.map(Self.instance)
    }

    public func instances(hostIDs: [String]) async throws -> [Instance] {
        guard !hostIDs.isEmpty else { return [] }
        return try await call("find instances by tag") {
            try await client.describeAllInstances(filters: [EC2Filter("tag:\(ManagedTags.hostID)", hostIDs)])
        }.map(Self.instance).filter { $0.state != .terminated }
    }

    public func instances(launchKeys: [String]) async throws -> [Instance] {
        guard !launchKeys.isEmpty else { return [] }
        return try await call("find instances by client token") {
            try await client.describeAllInstances(filters: [EC2Filter("client-token", launchKeys)])
        }.map(Self.instance).filter { $0.state != .terminated }
    }

    public func createVolume(_ request: VolumeRequest) async throws -> Volume {
        guard let zone = request.zone ?? settings.availabilityZone else {
            throw StepError.permanent(
                "no availability zone is known for the data volume", hint: "set provider.availability_zone in the configuration")
        }
        let create = CreateVolumeRequest(
            availabilityZone: zone, sizeGiB: request.sizeGiB, volumeType: settings.volumeType, kmsKeyId: settings.kmsKeyID,
            tags: request.tags.sorted { $0.key < $1.key }.map { EC2Tag($0.key, $0.value) }, clientToken: request.idempotencyKey)
        let volume = Self.volume(try await call("create volume") { try await client.createVolume(create) })
        try checkEncryption(volume)
        return volume
    }

    /// Post-condition: encrypted, and with the configured key when one is given as an ARN.
    func checkEncryption(_ volume: Volume) throws {
        let wanted = settings.kmsKeyID
        let keyMatches = wanted.map { !$0.hasPrefix("arn:") || volume.keyID == $0 } ?? true
        guard volume.encrypted, keyMatches else {
            throw StepError.permanent(
                "volume \(volume.id) is not encrypted with the configured KMS key (encrypted: \(volume.encrypted), key: \(volume.keyID ?? "none"))",
                hint: "check provider.kms_key_id and the key policy; delete volume \(volume.id), then retry")
        }
    }

    public func volumes(ids: [String]) async throws -> [Volume] {
        guard !ids.isEmpty else { return [] }
        return try await call("describe volumes") {
            try await client.describeAllVolumes(filters: [EC2Filter("volume-id", ids)])
        }.map(Self.volume)
    }

    public func volumes(hostIDs: [String]) async throws -> [Volume] {
        guard !hostIDs.isEmpty else { return [] }
        return try await call("find volumes by tag") {
            try await client.describeAllVolumes(filters: [EC2Filter("tag:\(ManagedTags.hostID)", hostIDs)])
        }.map(Self.volume)
    }

    public func managedInstances() async throws -> [Instance] {
        try await client.describeAllInstances(filters: [EC2Filter("tag:\(ManagedTags.managed)", ["true"])])
            .map(Self.instance).filter { $0.state != .terminated }
    }

    public func managedVolumes() async throws -> [Volume] {
        try await client.describeAllVolumes(filters: [
            EC2Filter("tag:\(ManagedTags.managed)", ["true"]), EC2Filter("tag:\(ManagedTags.volumeRole)", [ManagedTags.dataVolume]),
        ]).map(Self.volume)
    }

    public var attachmentDevice: String? { settings.device }

    /// The security groups and subnet are compared only when the configuration names them (else EC2
    /// picks defaults); the data volume's key when it is an ARN (an alias or id reads back as the ARN).
    public func declaration(instanceType: String, tags: [String: String]) -> CloudDeclaration {
        CloudDeclaration(
            instanceType: instanceType, securityGroupIDs: settings.securityGroupIDs.isEmpty ? nil : settings.securityGroupIDs,
            subnetID: settings.subnetID, tags: tags, rootVolumeEncrypted: settings.rootVolumeEncrypted,
            rootVolumeKeyID: nil, dataVolumeKeyID: settings.kmsKeyID)
    }

    public func attachVolume(volumeID: String, instanceID: String) async throws {
        _ = try await call("attach volume \(volumeID)") {
            try await client.attachVolume(volumeId: volumeID, instanceId: instanceID, device: settings.device)
        }
    }

    public func terminate(instanceID: String) async throws {
        do {
            _ = try await call("terminate \(instanceID)") { try await client.terminateInstances(ids: [instanceID]) }
        } catch let error as EC2Error where error.kind == .notFoundMaybeEventual {
            return  // gone, or not visible yet: the teardown step describes again before it is done
        }
    }

    public func deleteVolume(volumeID: String) async throws {
        do {
            try await call("delete volume \(volumeID)") { try await client.deleteVolume(volumeId: volumeID) }
        } catch let error as EC2Error where error.kind == .notFoundMaybeEventual {
            return  // already gone
        } catch let error as EC2Error where error.code == "VolumeInUse" {
            // Still detaching from its terminated instance: a wait, not a refusal.
            throw StepError.transient("\(error.description) (still detaching)")
        }
    }

    // MARK: Mapping

    /// Runs an EC2 call; errors keep their `EC2Error` type (a `ClassifiedError`) for the engine.
    func call<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        try await body()
    }

    static func instance(_ ec2: EC2Instance) -> Instance {
        Instance(
            id: ec2.id, state: Instance.State(rawValue: ec2.state.name.rawValue) ?? .pending, privateIP: ec2.privateIpAddress,
            zone: ec2.availabilityZone, tags: ec2.tags, metadataTokensRequired: ec2.metadataOptions?.httpTokens == "required",
            instanceType: ec2.instanceType, securityGroupIDs: ec2.securityGroupIds, subnetID: ec2.subnetId,
            rootVolumeID: ec2.blockDeviceMappings.first { $0.deviceName == ec2.rootDeviceName }?.volumeId)
    }

    static func volume(_ ec2: EC2Volume) -> Volume {
        // A detaching (or busy) volume is still attached: deleting it now would be refused.
        let attachment = ec2.attachments.first { $0.state != .detached }
        return Volume(
            id: ec2.id, zone: ec2.availabilityZone, sizeGiB: ec2.sizeGiB ?? 0,
            state: Volume.State(rawValue: ec2.state.rawValue) ?? .error, encrypted: ec2.encrypted, keyID: ec2.kmsKeyId,
            attachedTo: attachment?.instanceId, tags: ec2.tags)
    }
}

extension EC2Error: ClassifiedError {
    /// How the engine treats each kind of EC2 error.
    public var stepError: StepError {
        switch kind {
        case .throttled:
            // Throttling asks to slow down; it spends no attempt (a busy account must not fail hosts).
            return .throttled(description, retryAfter: retryAfter)
        case .transient:
            return .transient(description, retryAfter: retryAfter)
        case .notFoundMaybeEventual:
            return .transient("\(description) (may not be visible yet)")
        case .idempotentInstanceTerminated:
            // `launch` turns this into LaunchKeySpent (a new generation); elsewhere it is not expected.
            return .permanent(
                description, hint: "the earlier launch happened and its instance is gone; run `onetouch retry {host} --from provision`")
        case .idempotencyMismatch:
            return .permanent(
                description,
                hint:
                    "the request's settings changed since its first attempt, or its resource is gone; run `onetouch retry {host} --from {step}`"
            )
        case .authentication:
            // Credentials expire and come back (rotation, a renewed role, a corrected clock): look again
            // every minute; the client re-reads the credentials when AWS refuses them.
            let cause =
                Self.definiteClockSkewCodes.contains(code)
                ? "renew the AWS credentials (temporary ones may have expired) or correct this machine's clock"
                : "fix the AWS credentials or their IAM permissions"
            return .needsHuman(
                description,
                hint: "\(cause); the host continues by itself within a minute once they work, or run `onetouch resume {host}`",
                recheckAfter: .seconds(60))
        case .invalidRequest:
            return .permanent(
                description, hint: "fix the provider settings in the configuration, then run `onetouch retry {host} --from {step}`")
        }
    }
}
