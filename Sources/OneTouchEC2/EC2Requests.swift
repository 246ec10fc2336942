import CompressNIO
import Foundation
import NIOCore

/// Parameters of a one-instance RunInstances call.
public struct RunInstanceRequest: Sendable, Equatable {
    public enum InstanceProfile: Sendable, Equatable {
        case name(String)
        case arn(String)
    }

    /// Encrypted root EBS volume (`BlockDeviceMapping.1`).
    public struct RootVolume: Sendable, Equatable {
        /// The AMI's root device name, e.g. `/dev/xvda`.
        public var deviceName: String
        public var sizeGiB: Int
        public var volumeType: String
        /// Key id, alias, key ARN or alias ARN; `nil` uses the account's default EBS key.
        public var kmsKeyId: String?
        public var deleteOnTermination: Bool

        public init(deviceName: String, sizeGiB: Int, volumeType: String = "gp3", kmsKeyId: String? = nil, deleteOnTermination: Bool = true)
        {
            self.deviceName = deviceName
            self.sizeGiB = sizeGiB
            self.volumeType = volumeType
            self.kmsKeyId = kmsKeyId
            self.deleteOnTermination = deleteOnTermination
        }
    }

    public var imageId: String
    public var instanceType: String
    public var subnetId: String?
    public var securityGroupIds: [String]
    public var instanceProfile: InstanceProfile?
    /// Raw user-data bytes (at most 16 KiB); base64-encoded on the wire by the client. User-data that
    /// does not fit is gzip-compressed here, which cloud-init recognises and unpacks.
    public var userData: Data?
    /// IMDS hop limit, 1…64. IMDSv2 is always required and the endpoint always enabled.
    public var metadataHopLimit: Int
    public var rootVolume: RootVolume?
    public var instanceTags: [EC2Tag]
    public var volumeTags: [EC2Tag]
    /// Idempotency token: 1…64 ASCII characters, stable across retries of one logical launch.
    public var clientToken: String

    public init(
        imageId: String, instanceType: String, subnetId: String? = nil, securityGroupIds: [String] = [],
        instanceProfile: InstanceProfile? = nil, userData: Data? = nil, metadataHopLimit: Int = 1,
        rootVolume: RootVolume? = nil, instanceTags: [EC2Tag] = [], volumeTags: [EC2Tag] = [], clientToken: String
    ) {
        self.imageId = imageId
        self.instanceType = instanceType
        self.subnetId = subnetId
        self.securityGroupIds = securityGroupIds
        self.instanceProfile = instanceProfile
        self.userData = userData.map(Self.fitting)
        self.metadataHopLimit = metadataHopLimit
        self.rootVolume = rootVolume
        self.instanceTags = instanceTags
        self.volumeTags = volumeTags
        self.clientToken = clientToken
    }

    public static let maxUserDataBytes = 16 * 1024

    /// `data` as it is when it fits EC2's limit, else gzip-compressed (validation then checks the
    /// compressed size).
    static func fitting(_ data: Data) -> Data {
        guard data.count > maxUserDataBytes else { return data }
        var buffer = ByteBuffer(bytes: data)
        guard var compressed = try? buffer.compress(with: .gzip()), let bytes = compressed.readBytes(length: compressed.readableBytes)
        else { return data }
        return Data(bytes)
    }
}

/// Parameters of CreateVolume. The volume is always encrypted.
public struct CreateVolumeRequest: Sendable, Equatable {
    public var availabilityZone: String
    public var sizeGiB: Int
    public var volumeType: String
    /// `nil` uses the account's default EBS key.
    public var kmsKeyId: String?
    public var tags: [EC2Tag]
    public var clientToken: String?

    public init(
        availabilityZone: String, sizeGiB: Int, volumeType: String = "gp3", kmsKeyId: String? = nil, tags: [EC2Tag] = [],
        clientToken: String? = nil
    ) {
        self.availabilityZone = availabilityZone
        self.sizeGiB = sizeGiB
        self.volumeType = volumeType
        self.kmsKeyId = kmsKeyId
        self.tags = tags
        self.clientToken = clientToken
    }
}

/// Builds Query API parameter lists with EC2's list flattening (`Name.N`, 1-based).
struct EC2Parameters {
    private(set) var pairs: [(String, String)] = []

    mutating func add(_ name: String, _ value: String) {
        pairs.append((name, value))
    }

    mutating func add(_ name: String, _ value: String?) {
        if let value { pairs.append((name, value)) }
    }

    /// `Name.1=a&Name.2=b`.
    mutating func addList(_ name: String, _ values: [String]) {
        for (index, value) in values.enumerated() { add("\(name).\(index + 1)", value) }
    }

    /// `Filter.N.Name`, `Filter.N.Value.M`.
    mutating func addFilters(_ filters: [EC2Filter]) {
        for (index, filter) in filters.enumerated() {
            add("Filter.\(index + 1).Name", filter.name)
            addList("Filter.\(index + 1).Value", filter.values)
        }
    }

    /// `<prefix>.N.Key`, `<prefix>.N.Value`.
    mutating func addTags(_ prefix: String, _ tags: [EC2Tag]) {
        for (index, tag) in tags.enumerated() {
            add("\(prefix).\(index + 1).Key", tag.key)
            add("\(prefix).\(index + 1).Value", tag.value)
        }
    }

    /// `TagSpecification.N.ResourceType` + `TagSpecification.N.Tag.M.*`, skipping empty tag lists.
    mutating func addTagSpecifications(_ specifications: [(resourceType: String, tags: [EC2Tag])]) {
        var index = 0
        for specification in specifications where !specification.tags.isEmpty {
            index += 1
            add("TagSpecification.\(index).ResourceType", specification.resourceType)
            addTags("TagSpecification.\(index).Tag", specification.tags)
        }
    }
}

/// Client-side checks of values AWS would reject anyway, done before spending a rate token.
enum EC2Validation {
    /// 1…64 ASCII characters (AWS: "up to 64 ASCII characters", case-sensitive).
    static func clientToken(_ token: String, action: String) throws {
        guard !token.isEmpty, token.utf8.count <= 64, token.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F })
        else {
            throw EC2Error.validation("ClientToken must be 1 to 64 printable ASCII characters", action: action)
        }
    }

    static func runInstance(_ request: RunInstanceRequest) throws {
        let action = "RunInstances"
        try clientToken(request.clientToken, action: action)
        guard (1...64).contains(request.metadataHopLimit) else {
            throw EC2Error.validation("MetadataOptions.HttpPutResponseHopLimit must be 1 to 64", action: action)
        }
        if let userData = request.userData, userData.count > RunInstanceRequest.maxUserDataBytes {
            throw EC2Error.validation(
                "user data is \(userData.count) bytes; the limit is \(RunInstanceRequest.maxUserDataBytes) bytes", action: action)
        }
        guard !request.imageId.isEmpty, !request.instanceType.isEmpty else {
            throw EC2Error.validation("ImageId and InstanceType are required", action: action)
        }
        if let root = request.rootVolume, root.sizeGiB <= 0 {
            throw EC2Error.validation("root volume size must be positive", action: action)
        }
    }

    static func createVolume(_ request: CreateVolumeRequest) throws {
        if let token = request.clientToken { try clientToken(token, action: "CreateVolume") }
        guard request.sizeGiB > 0, !request.availabilityZone.isEmpty else {
            throw EC2Error.validation("AvailabilityZone and a positive Size are required", action: "CreateVolume")
        }
    }

    static func notEmpty(_ values: [String], _ name: String, action: String) throws {
        guard !values.isEmpty else { throw EC2Error.validation("at least one \(name) is required", action: action) }
    }
}
