import Foundation

/// A key/value tag. Ordered arrays of tags keep request bodies deterministic.
public struct EC2Tag: Sendable, Hashable {
    public var key: String
    public var value: String

    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
    }
}

/// A DescribeInstances/DescribeVolumes filter: `Filter.N.Name` with `Filter.N.Value.M`.
public struct EC2Filter: Sendable, Hashable {
    public var name: String
    public var values: [String]

    public init(_ name: String, _ values: [String]) {
        self.name = name
        self.values = values
    }
}

/// One page of a paginated Describe call. `nextToken == nil` means this was the last page.
public struct EC2Page<Element: Sendable>: Sendable {
    public var items: [Element]
    public var nextToken: String?

    public init(items: [Element], nextToken: String?) {
        self.items = items
        self.nextToken = nextToken
    }
}

extension EC2Page: Equatable where Element: Equatable {}

// MARK: - Instances

/// `pending|running|shutting-down|terminated|stopping|stopped`; unknown future values are kept.
public struct EC2InstanceStateName: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let pending = Self(rawValue: "pending")
    public static let running = Self(rawValue: "running")
    public static let shuttingDown = Self(rawValue: "shutting-down")
    public static let terminated = Self(rawValue: "terminated")
    public static let stopping = Self(rawValue: "stopping")
    public static let stopped = Self(rawValue: "stopped")

    public var description: String { rawValue }
}

public struct EC2InstanceState: Sendable, Hashable {
    public var name: EC2InstanceStateName
    /// Only the low byte of the code AWS sends (0 pending, 16 running, 32 shutting-down,
    /// 48 terminated, 64 stopping, 80 stopped); the high byte is internal to AWS.
    public var code: Int

    public init(name: EC2InstanceStateName, code: Int) {
        self.name = name
        self.code = code & 0xFF
    }
}

public struct EC2MetadataOptions: Sendable, Hashable {
    /// `optional` or `required` (IMDSv2 only when `required`).
    public var httpTokens: String?
    public var httpPutResponseHopLimit: Int?
    /// `enabled` or `disabled`.
    public var httpEndpoint: String?
    /// `pending` or `applied`.
    public var state: String?

    public init(httpTokens: String? = nil, httpPutResponseHopLimit: Int? = nil, httpEndpoint: String? = nil, state: String? = nil) {
        self.httpTokens = httpTokens
        self.httpPutResponseHopLimit = httpPutResponseHopLimit
        self.httpEndpoint = httpEndpoint
        self.state = state
    }
}

/// An EBS volume mapped into an instance (`blockDeviceMapping` item).
public struct EC2InstanceBlockDevice: Sendable, Hashable {
    public var deviceName: String
    public var volumeId: String?
    public var status: String?
    public var deleteOnTermination: Bool?

    public init(deviceName: String, volumeId: String? = nil, status: String? = nil, deleteOnTermination: Bool? = nil) {
        self.deviceName = deviceName
        self.volumeId = volumeId
        self.status = status
        self.deleteOnTermination = deleteOnTermination
    }
}

public struct EC2Instance: Sendable, Equatable {
    public var id: String
    public var state: EC2InstanceState
    public var reservationId: String?
    public var instanceType: String?
    public var imageId: String?
    public var privateIpAddress: String?
    /// `placement/availabilityZone`.
    public var availabilityZone: String?
    public var subnetId: String?
    public var clientToken: String?
    public var tags: [String: String]
    public var metadataOptions: EC2MetadataOptions?
    public var iamInstanceProfileArn: String?
    public var blockDeviceMappings: [EC2InstanceBlockDevice]
    public var launchTime: Date?
    /// `groupSet/item/groupId`; nil when the answer has no group set.
    public var securityGroupIds: [String]?
    public var rootDeviceName: String?

    public init(
        id: String, state: EC2InstanceState, reservationId: String? = nil, instanceType: String? = nil,
        imageId: String? = nil, privateIpAddress: String? = nil, availabilityZone: String? = nil, subnetId: String? = nil,
        clientToken: String? = nil, tags: [String: String] = [:], metadataOptions: EC2MetadataOptions? = nil,
        iamInstanceProfileArn: String? = nil, blockDeviceMappings: [EC2InstanceBlockDevice] = [], launchTime: Date? = nil,
        securityGroupIds: [String]? = nil, rootDeviceName: String? = nil
    ) {
        self.securityGroupIds = securityGroupIds
        self.rootDeviceName = rootDeviceName
        self.id = id
        self.state = state
        self.reservationId = reservationId
        self.instanceType = instanceType
        self.imageId = imageId
        self.privateIpAddress = privateIpAddress
        self.availabilityZone = availabilityZone
        self.subnetId = subnetId
        self.clientToken = clientToken
        self.tags = tags
        self.metadataOptions = metadataOptions
        self.iamInstanceProfileArn = iamInstanceProfileArn
        self.blockDeviceMappings = blockDeviceMappings
        self.launchTime = launchTime
    }
}

/// One entry of a TerminateInstances response.
public struct EC2InstanceStateChange: Sendable, Hashable {
    public var instanceId: String
    public var currentState: EC2InstanceState
    public var previousState: EC2InstanceState

    public init(instanceId: String, currentState: EC2InstanceState, previousState: EC2InstanceState) {
        self.instanceId = instanceId
        self.currentState = currentState
        self.previousState = previousState
    }
}

// MARK: - Volumes

/// `creating|available|in-use|deleting|deleted|error`; unknown future values are kept.
public struct EC2VolumeState: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let creating = Self(rawValue: "creating")
    public static let available = Self(rawValue: "available")
    public static let inUse = Self(rawValue: "in-use")
    public static let deleting = Self(rawValue: "deleting")
    public static let deleted = Self(rawValue: "deleted")
    public static let error = Self(rawValue: "error")

    public var description: String { rawValue }
}

/// `attaching|attached|detaching|detached|busy`; unknown future values are kept.
public struct EC2VolumeAttachmentState: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let attaching = Self(rawValue: "attaching")
    public static let attached = Self(rawValue: "attached")
    public static let detaching = Self(rawValue: "detaching")
    public static let detached = Self(rawValue: "detached")
    public static let busy = Self(rawValue: "busy")

    public var description: String { rawValue }
}

public struct EC2VolumeAttachment: Sendable, Hashable {
    public var volumeId: String?
    public var instanceId: String
    /// The device name given to AttachVolume (on Nitro the guest sees `/dev/nvmeXn1` instead).
    public var device: String
    public var state: EC2VolumeAttachmentState

    public init(volumeId: String? = nil, instanceId: String, device: String, state: EC2VolumeAttachmentState) {
        self.volumeId = volumeId
        self.instanceId = instanceId
        self.device = device
        self.state = state
    }
}

public struct EC2Volume: Sendable, Equatable {
    public var id: String
    public var sizeGiB: Int?
    public var availabilityZone: String?
    public var state: EC2VolumeState
    public var volumeType: String?
    public var encrypted: Bool
    public var kmsKeyId: String?
    public var tags: [String: String]
    public var attachments: [EC2VolumeAttachment]

    public init(
        id: String, sizeGiB: Int? = nil, availabilityZone: String? = nil, state: EC2VolumeState, volumeType: String? = nil,
        encrypted: Bool = false, kmsKeyId: String? = nil, tags: [String: String] = [:], attachments: [EC2VolumeAttachment] = []
    ) {
        self.id = id
        self.sizeGiB = sizeGiB
        self.availabilityZone = availabilityZone
        self.state = state
        self.volumeType = volumeType
        self.encrypted = encrypted
        self.kmsKeyId = kmsKeyId
        self.tags = tags
        self.attachments = attachments
    }
}
