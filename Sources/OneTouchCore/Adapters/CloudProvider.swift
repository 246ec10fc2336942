import Foundation

/// The cloud's answer to a launch whose idempotency key was used before by an instance that is now
/// terminated (EC2: `IdempotentInstanceTerminated`). The earlier launch happened and its VM is gone;
/// the key cannot launch again, so the host continues under its next generation.
public struct LaunchKeySpent: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// What a launch needs. `idempotencyKey` is the same for every retry of one logical launch, so the
/// cloud never creates a second VM for it (EC2 ClientToken).
public struct LaunchRequest: Sendable, Equatable {
    public var hostID: String
    public var hostName: String
    public var role: String
    public var instanceType: String
    public var userData: Data
    public var idempotencyKey: String
    public var tags: [String: String]

    public init(
        hostID: String, hostName: String, role: String, instanceType: String, userData: Data,
        idempotencyKey: String, tags: [String: String]
    ) {
        self.hostID = hostID
        self.hostName = hostName
        self.role = role
        self.instanceType = instanceType
        self.userData = userData
        self.idempotencyKey = idempotencyKey
        self.tags = tags
    }
}

public struct Instance: Sendable, Equatable, Codable {
    public enum State: String, Sendable, Codable {
        case pending, running, stopping, stopped, shuttingDown = "shutting-down", terminated
    }
    public var id: String
    public var state: State
    public var privateIP: String?
    public var zone: String?
    public var tags: [String: String]
    /// IMDSv2 required (`HttpTokens=required`), where the cloud has such a thing.
    public var metadataTokensRequired: Bool
    /// What cloud drift compares, where the cloud tells (nil: it does not).
    public var instanceType: String?
    public var securityGroupIDs: [String]?
    public var subnetID: String?
    public var rootVolumeID: String?

    public init(
        id: String, state: State, privateIP: String? = nil, zone: String? = nil, tags: [String: String] = [:],
        metadataTokensRequired: Bool = true, instanceType: String? = nil, securityGroupIDs: [String]? = nil,
        subnetID: String? = nil, rootVolumeID: String? = nil
    ) {
        self.id = id
        self.state = state
        self.privateIP = privateIP
        self.zone = zone
        self.tags = tags
        self.metadataTokensRequired = metadataTokensRequired
        self.instanceType = instanceType
        self.securityGroupIDs = securityGroupIDs
        self.subnetID = subnetID
        self.rootVolumeID = rootVolumeID
    }
}

public struct VolumeRequest: Sendable, Equatable {
    public var hostID: String
    public var zone: String?
    public var sizeGiB: Int
    public var idempotencyKey: String
    public var tags: [String: String]

    public init(hostID: String, zone: String?, sizeGiB: Int, idempotencyKey: String, tags: [String: String]) {
        self.hostID = hostID
        self.zone = zone
        self.sizeGiB = sizeGiB
        self.idempotencyKey = idempotencyKey
        self.tags = tags
    }
}

public struct Volume: Sendable, Equatable, Codable {
    public enum State: String, Sendable, Codable {
        case creating, available, inUse = "in-use", deleting, deleted, error
    }
    public var id: String
    public var zone: String?
    public var sizeGiB: Int
    public var state: State
    public var encrypted: Bool
    public var keyID: String?
    public var attachedTo: String?
    public var tags: [String: String]

    public init(
        id: String, zone: String?, sizeGiB: Int, state: State, encrypted: Bool, keyID: String? = nil,
        attachedTo: String? = nil, tags: [String: String] = [:]
    ) {
        self.id = id
        self.zone = zone
        self.sizeGiB = sizeGiB
        self.state = state
        self.encrypted = encrypted
        self.keyID = keyID
        self.attachedTo = attachedTo
        self.tags = tags
    }
}

/// Tags every managed resource carries, so look-ups by tag find what a crash left behind.
public enum ManagedTags {
    public static let hostID = "onetouch:host-id"
    public static let managed = "onetouch:managed"
    /// The installation (database) that made the resource; reconcile looks only at its own.
    public static let installation = "onetouch:installation"
    public static let name = "Name"
    /// On data volumes only (`data`), so a look-up never mistakes the root volume for the data volume.
    public static let volumeRole = "onetouch:volume"
    public static let dataVolume = "data"
}

/// A cloud that runs VMs and data volumes (EC2, local QEMU). Errors are `StepError`s or
/// `ClassifiedError`s; "already gone" on removal is success.
public protocol CloudProvider: Sendable {
    /// Launches (or, for a key seen before, returns) the VM for `request`.
    func launch(_ request: LaunchRequest) async throws -> Instance
    /// Instances by id; unknown ids are simply absent.
    func instances(ids: [String]) async throws -> [Instance]
    /// Instances tagged with any of these host ids (any state but terminated).
    func instances(hostIDs: [String]) async throws -> [Instance]
    /// Instances launched under any of these idempotency keys (EC2: the `client-token` filter), any
    /// state but terminated. Finds a launch whose tags the cloud does not show yet.
    func instances(launchKeys: [String]) async throws -> [Instance]
    /// Creates (or, for a key seen before, returns) an encrypted data volume.
    func createVolume(_ request: VolumeRequest) async throws -> Volume
    /// Volumes by id; unknown ids are simply absent.
    func volumes(ids: [String]) async throws -> [Volume]
    /// Volumes tagged with any of these host ids.
    func volumes(hostIDs: [String]) async throws -> [Volume]
    /// Every instance (not terminated) and every data volume tagged as managed by onetouch.
    func managedInstances() async throws -> [Instance]
    func managedVolumes() async throws -> [Volume]
    func attachVolume(volumeID: String, instanceID: String) async throws
    /// The device name `attachVolume` asks for (EC2: `/dev/sdf`), told to the host, which finds the
    /// volume by serial where the machine has one and by this name where it has not (Xen); nil
    /// when the name means nothing to the guest.
    var attachmentDevice: String? { get }
    func terminate(instanceID: String) async throws
    func deleteVolume(volumeID: String) async throws
    /// What this cloud's configuration declares for a host of `instanceType` launched with `tags`
    /// (cloud drift compares live resources with it).
    func declaration(instanceType: String, tags: [String: String]) -> CloudDeclaration
}

extension CloudProvider {
    public var attachmentDevice: String? { nil }
    public func declaration(instanceType: String, tags: [String: String]) -> CloudDeclaration {
        CloudDeclaration(instanceType: instanceType, tags: tags)
    }
}
