import Foundation
import OneTouchCore
import Synchronization

/// An in-memory cloud that honours idempotency keys like EC2's ClientToken and counts every resource
/// it creates. For tests only.
public final class FakeCloud: CloudProvider, Sendable {
    public let faults = FaultPlan()
    private struct State {
        var instances: [String: Instance] = [:]
        var volumes: [String: Volume] = [:]
        var launchKeys: [String: String] = [:]
        var volumeKeys: [String: String] = [:]
        var userData: [String: Data] = [:]
        var counter = 0
        var calls: [String: Int] = [:]
        var instancesCreated = 0
        var volumesCreated = 0
        var describesUntilRunning: [String: Int] = [:]
        var rootVolumes: Set<String> = []
        var encryptionKeyUsable = true
        var rolledBackKeys: Set<String> = []
        var instancesStayPending = false
        var volumesStayCreating = false
        var volumesStayAttached = false
        /// Like EC2's eventual consistency: ids created while `hideNew` is on are absent from every
        /// describe, and a terminate or delete of one is "not found" (which callers take as gone).
        var hideNew = false
        var hidden: Set<String> = []
    }
    private let state = Mutex(State())
    /// How many describes a new instance stays `pending` for.
    public let pendingDescribes: Int
    public let encryptVolumes: Bool
    public let requireMetadataTokens: Bool

    /// Real time each launch takes (to keep the engine's slots busy).
    public let launchDelay: Duration

    /// The device name volumes are attached as (EC2's `/dev/sdf`); nil like a cloud whose guests
    /// find volumes by serial only.
    public let attachmentDevice: String?

    public init(
        pendingDescribes: Int = 0, encryptVolumes: Bool = true, requireMetadataTokens: Bool = true, launchDelay: Duration = .zero,
        attachmentDevice: String? = nil
    ) {
        self.attachmentDevice = attachmentDevice
        self.launchDelay = launchDelay
        self.pendingDescribes = pendingDescribes
        self.encryptVolumes = encryptVolumes
        self.requireMetadataTokens = requireMetadataTokens
    }

    /// Like EBS with a disabled KMS key: CreateVolume is accepted (`creating`), then the volume is
    /// rolled back and its idempotency key is refused from then on.
    public func setEncryptionKeyUsable(_ usable: Bool) { state.withLock { $0.encryptionKeyUsable = usable } }

    /// New instances stay `pending` without an address (a launch EC2 never completes).
    public func setInstancesStayPending(_ stuck: Bool) { state.withLock { $0.instancesStayPending = stuck } }
    /// New data volumes stay `creating` (a stuck EBS volume).
    public func setVolumesStayCreating(_ stuck: Bool) { state.withLock { $0.volumesStayCreating = stuck } }
    /// Data volumes stay attached to a terminated instance (a detach that never ends).
    public func setVolumesStayAttached(_ stuck: Bool) { state.withLock { $0.volumesStayAttached = stuck } }

    /// New instances and volumes stay invisible until `revealAll()` (EC2 listing them late).
    public func setNewResourcesHidden(_ hide: Bool) { state.withLock { $0.hideNew = hide } }
    public func revealAll() { state.withLock { $0.hidden.removeAll() } }

    public var instancesCreated: Int { state.withLock { $0.instancesCreated } }
    public var volumesCreated: Int { state.withLock { $0.volumesCreated } }
    public func calls(_ operation: String) -> Int { state.withLock { $0.calls[operation, default: 0] } }
    public var totalCalls: Int { state.withLock { $0.calls.values.reduce(0, +) } }
    public var allInstances: [Instance] { state.withLock { Array($0.instances.values) } }
    /// Data volumes (root volumes excluded).
    public var allVolumes: [Volume] { state.withLock { s in s.volumes.values.filter { !s.rootVolumes.contains($0.id) } } }
    public func userData(of instanceID: String) -> Data? { state.withLock { $0.userData[instanceID] } }

    private func count(_ operation: String) { state.withLock { $0.calls[operation, default: 0] += 1 } }

    public func launch(_ request: LaunchRequest) async throws -> Instance {
        count("launch")
        if launchDelay > .zero { try await Task.sleep(for: launchDelay) }
        return try faults.perform("launch") {
            try state.withLock { s in
                if let id = s.launchKeys[request.idempotencyKey], let existing = s.instances[id] {
                    // Like EC2 since 2025: a key whose instance is terminated cannot launch again.
                    if existing.state == .terminated {
                        throw LaunchKeySpent("IdempotentInstanceTerminated: the client token's instance \(id) is terminated")
                    }
                    return existing
                }
                s.counter += 1
                s.instancesCreated += 1
                let id = String(format: "i-%017x", s.counter)
                let instance = Instance(
                    id: id, state: .pending,
                    privateIP: s.instancesStayPending ? nil : "10.0.\(s.counter / 250).\(s.counter % 250 + 2)", zone: "fake-1a",
                    tags: request.tags, metadataTokensRequired: requireMetadataTokens, instanceType: request.instanceType,
                    rootVolumeID: String(format: "vol-%017x", s.counter + 1))
                s.instances[id] = instance
                // Like EC2 with a volume TagSpecification: the root volume carries the launch tags.
                s.counter += 1
                let root = String(format: "vol-%017x", s.counter)
                s.volumes[root] = Volume(
                    id: root, zone: "fake-1a", sizeGiB: 8, state: .inUse, encrypted: false, attachedTo: id, tags: request.tags)
                s.rootVolumes.insert(root)
                s.launchKeys[request.idempotencyKey] = id
                s.userData[id] = request.userData
                s.describesUntilRunning[id] = s.instancesStayPending ? Int.max : pendingDescribes
                if s.hideNew { s.hidden.insert(id) }
                return instance
            }
        }
    }

    public func instances(ids: [String]) async throws -> [Instance] {
        count("describeInstances")
        return try faults.perform("describeInstances") {
            state.withLock { s in
                ids.compactMap { id -> Instance? in
                    guard !s.hidden.contains(id), var instance = s.instances[id] else { return nil }
                    if instance.state == .pending {
                        let left = s.describesUntilRunning[id, default: 0]
                        if left <= 0 {
                            instance.state = .running
                            s.instances[id] = instance
                        } else {
                            s.describesUntilRunning[id] = left - 1
                        }
                    }
                    return instance
                }
            }
        }
    }

    public func instances(hostIDs: [String]) async throws -> [Instance] {
        count("describeInstancesByTag")
        return try faults.perform("describeInstancesByTag") {
            state.withLock { s in
                s.instances.values.filter { hostIDs.contains($0.tags[ManagedTags.hostID] ?? "") && !s.hidden.contains($0.id) }
                    .sorted { $0.id < $1.id }
            }
        }
    }

    public func instances(launchKeys: [String]) async throws -> [Instance] {
        count("describeInstancesByLaunchKey")
        return try faults.perform("describeInstancesByLaunchKey") {
            state.withLock { s in
                launchKeys.compactMap { s.launchKeys[$0] }.compactMap { s.instances[$0] }.filter { $0.state != .terminated }
                    .filter { !s.hidden.contains($0.id) }.sorted { $0.id < $1.id }
            }
        }
    }

    public func createVolume(_ request: VolumeRequest) async throws -> Volume {
        count("createVolume")
        return try faults.perform("createVolume") {
            try state.withLock { s in
                if s.rolledBackKeys.contains(request.idempotencyKey) {
                    throw StepError.permanent("IdempotentParameterMismatch: the volume of this key was rolled back")
                }
                if let id = s.volumeKeys[request.idempotencyKey], let existing = s.volumes[id] { return existing }
                s.counter += 1
                s.volumesCreated += 1
                let id = String(format: "vol-%017x", s.counter)
                let volume = Volume(
                    id: id, zone: request.zone, sizeGiB: request.sizeGiB,
                    state: s.encryptionKeyUsable && !s.volumesStayCreating ? .available : .creating,
                    encrypted: encryptVolumes, keyID: encryptVolumes ? "fake-key" : nil, tags: request.tags)
                guard s.encryptionKeyUsable else {
                    s.rolledBackKeys.insert(request.idempotencyKey)
                    return volume
                }
                s.volumes[id] = volume
                s.volumeKeys[request.idempotencyKey] = id
                if s.hideNew { s.hidden.insert(id) }
                return volume
            }
        }
    }

    public func volumes(ids: [String]) async throws -> [Volume] {
        count("describeVolumes")
        return try faults.perform("describeVolumes") {
            state.withLock { s in ids.filter { !s.hidden.contains($0) }.compactMap { s.volumes[$0] } }
        }
    }

    public func volumes(hostIDs: [String]) async throws -> [Volume] {
        count("describeVolumesByTag")
        return try faults.perform("describeVolumesByTag") {
            state.withLock { s in
                s.volumes.values.filter { hostIDs.contains($0.tags[ManagedTags.hostID] ?? "") && !s.hidden.contains($0.id) }
                    .sorted { $0.id < $1.id }
            }
        }
    }

    public func managedInstances() async throws -> [Instance] {
        count("managedInstances")
        return state.withLock { s in
            s.instances.values.filter { $0.tags[ManagedTags.managed] == "true" && $0.state != .terminated }.sorted { $0.id < $1.id }
        }
    }

    public func managedVolumes() async throws -> [Volume] {
        count("managedVolumes")
        return state.withLock { s in
            s.volumes.values.filter { $0.tags[ManagedTags.volumeRole] == ManagedTags.dataVolume }.sorted { $0.id < $1.id }
        }
    }

    /// Changes an instance as a person at the cloud's console would (cloud drift tests).
    public func change(instance id: String, _ body: @Sendable (inout Instance) -> Void) {
        state.withLock { s in
            if var instance = s.instances[id] {
                body(&instance)
                s.instances[id] = instance
            }
        }
    }

    /// Launches an instance outside onetouch's bookkeeping (an orphan), for reconcile tests; tagged
    /// with an installation when one is given (untagged, like resources made before installations).
    public func plantOrphan(hostID: String, installation: String? = nil) -> (instance: String, volume: String) {
        state.withLock { s in
            var tags = [ManagedTags.hostID: hostID, ManagedTags.managed: "true"]
            tags[ManagedTags.installation] = installation
            s.counter += 1
            let instance = String(format: "i-%017x", s.counter)
            s.instances[instance] = Instance(id: instance, state: .running, privateIP: "10.9.9.9", zone: "fake-1a", tags: tags)
            s.counter += 1
            let volume = String(format: "vol-%017x", s.counter)
            tags[ManagedTags.volumeRole] = ManagedTags.dataVolume
            s.volumes[volume] = Volume(id: volume, zone: "fake-1a", sizeGiB: 1, state: .available, encrypted: true, tags: tags)
            return (instance, volume)
        }
    }

    public func attachVolume(volumeID: String, instanceID: String) async throws {
        count("attachVolume")
        try faults.perform("attachVolume") {
            try state.withLock { s in
                guard var volume = s.volumes[volumeID] else { throw StepError.permanent("no volume \(volumeID)") }
                if volume.attachedTo == instanceID { return }
                guard volume.attachedTo == nil else { throw StepError.permanent("VolumeInUse: \(volumeID)") }
                volume.attachedTo = instanceID
                volume.state = .inUse
                s.volumes[volumeID] = volume
            }
        }
    }

    public func terminate(instanceID: String) async throws {
        count("terminate")
        try faults.perform("terminate") {
            state.withLock { s in
                guard !s.hidden.contains(instanceID), var instance = s.instances[instanceID] else { return }
                instance.state = .terminated
                s.instances[instanceID] = instance
                for (id, var volume) in s.volumes where volume.attachedTo == instanceID {
                    if s.rootVolumes.contains(id) {
                        s.volumes[id] = nil  // DeleteOnTermination
                        continue
                    }
                    if s.volumesStayAttached { continue }
                    volume.attachedTo = nil
                    volume.state = .available
                    s.volumes[id] = volume
                }
            }
        }
    }

    public func deleteVolume(volumeID: String) async throws {
        count("deleteVolume")
        try faults.perform("deleteVolume") {
            try state.withLock { s in
                guard !s.hidden.contains(volumeID), let volume = s.volumes[volumeID] else { return }
                guard volume.attachedTo == nil else { throw StepError.transient("VolumeInUse: \(volumeID)") }
                s.volumes[volumeID] = nil
            }
        }
    }
}
