import Foundation
import OneTouchCore

/// A minimal EC2 Query API client: form-encodes the parameters (protocols.md §1.2), signs with
/// SigV4, sends through an injected ``HTTPTransport`` and decodes the XML answer.
///
/// It makes one attempt per call, with one exception, as the AWS SDKs do: a request refused for
/// its time or its credentials is sent again at once if that can help — signed with the server's
/// time when the answer's `Date` shows this machine's clock is off (``ClockSkew``), or with fresh
/// credentials when re-reading them gives others. Every failure is an ``EC2Error`` whose `kind`
/// tells the caller whether and how to retry; credential problems surface as `.authentication`.
/// If a rate limiter is given, each request first takes a token from the matching bucket.
public struct EC2Client: Sendable {
    public static let apiVersion = "2016-11-15"
    static let contentType = "application/x-www-form-urlencoded; charset=utf-8"
    static let userAgent = "onetouch-ec2/1"

    public let region: String
    public let endpoint: URL
    let credentials: any AWSCredentialsProvider
    let transport: any HTTPTransport
    let now: @Sendable () -> Date
    let rateLimiter: EC2RateLimiter?
    let timeout: Duration
    let signer: SigV4Signer
    /// How far AWS's clock is from ours, learnt from its answers; requests are signed with AWS's time.
    public let clockSkew: ClockSkew

    public init(
        credentials: any AWSCredentialsProvider, region: String, endpoint: URL, transport: any HTTPTransport,
        now: @escaping @Sendable () -> Date = Date.init, rateLimiter: EC2RateLimiter? = nil, timeout: Duration = .seconds(30)
    ) {
        self.credentials = credentials
        self.region = region
        self.endpoint = endpoint
        self.transport = transport
        self.now = now
        self.rateLimiter = rateLimiter
        self.timeout = timeout
        self.signer = SigV4Signer(region: region, service: "ec2")
        self.clockSkew = ClockSkew()
    }

    public init(
        credentials: any AWSCredentialsProvider, settings: EC2Settings, transport: any HTTPTransport,
        now: @escaping @Sendable () -> Date = Date.init, rateLimiter: EC2RateLimiter? = nil, timeout: Duration = .seconds(30)
    ) {
        self.init(
            credentials: credentials, region: settings.region, endpoint: settings.endpoint, transport: transport, now: now,
            rateLimiter: rateLimiter, timeout: timeout)
    }

    // MARK: - Instances

    /// Launches one instance (`MinCount=MaxCount=1`) with IMDSv2 required.
    public func runInstance(_ request: RunInstanceRequest) async throws -> EC2Instance {
        try EC2Validation.runInstance(request)
        var p = EC2Parameters()
        p.add("ImageId", request.imageId)
        p.add("InstanceType", request.instanceType)
        p.add("MinCount", "1")
        p.add("MaxCount", "1")
        p.add("SubnetId", request.subnetId)
        p.addList("SecurityGroupId", request.securityGroupIds)
        p.add("UserData", request.userData.map { $0.base64EncodedString() })
        switch request.instanceProfile {
        case .name(let name): p.add("IamInstanceProfile.Name", name)
        case .arn(let arn): p.add("IamInstanceProfile.Arn", arn)
        case nil: break
        }
        p.add("MetadataOptions.HttpTokens", "required")
        p.add("MetadataOptions.HttpEndpoint", "enabled")
        p.add("MetadataOptions.HttpPutResponseHopLimit", String(request.metadataHopLimit))
        if let root = request.rootVolume {
            p.add("BlockDeviceMapping.1.DeviceName", root.deviceName)
            p.add("BlockDeviceMapping.1.Ebs.VolumeSize", String(root.sizeGiB))
            p.add("BlockDeviceMapping.1.Ebs.VolumeType", root.volumeType)
            p.add("BlockDeviceMapping.1.Ebs.Encrypted", "true")
            p.add("BlockDeviceMapping.1.Ebs.KmsKeyId", root.kmsKeyId)
            p.add("BlockDeviceMapping.1.Ebs.DeleteOnTermination", root.deleteOnTermination ? "true" : "false")
        }
        p.addTagSpecifications([("instance", request.instanceTags), ("volume", request.volumeTags)])
        p.add("ClientToken", request.clientToken)
        return try EC2ResponseDecoder.runInstances(try await call("RunInstances", p))
    }

    /// One page of DescribeInstances. AWS rejects `maxResults` together with `instanceIds`;
    /// prefer the `instance-id` filter, which tolerates unknown ids (protocols.md §1.5).
    public func describeInstances(
        filters: [EC2Filter] = [], instanceIds: [String] = [], maxResults: Int? = nil, nextToken: String? = nil
    ) async throws -> EC2Page<EC2Instance> {
        let action = "DescribeInstances"
        if maxResults != nil && !instanceIds.isEmpty {
            throw EC2Error.validation(
                "MaxResults cannot be combined with InstanceId", action: action, code: "InvalidParameterCombination")
        }
        if let maxResults, !(5...1000).contains(maxResults) {
            throw EC2Error.validation("MaxResults must be 5 to 1000", action: action)
        }
        var p = EC2Parameters()
        p.addFilters(filters)
        p.addList("InstanceId", instanceIds)
        p.add("MaxResults", maxResults.map(String.init))
        p.add("NextToken", nextToken)
        let paged = !filters.isEmpty || maxResults != nil || nextToken != nil
        return try EC2ResponseDecoder.describeInstances(try await call(action, p, filteredOrPaginated: paged))
    }

    /// Follows `nextToken` until the last page (`pageSize` is sent as `MaxResults`).
    public func describeAllInstances(filters: [EC2Filter], pageSize: Int = 100) async throws -> [EC2Instance] {
        try await allPages { try await describeInstances(filters: filters, maxResults: pageSize, nextToken: $0) }
    }

    /// `DescribeInstanceAttribute Attribute=userData`: the raw user-data bytes, `nil` if none.
    public func describeInstanceUserData(instanceId: String) async throws -> Data? {
        var p = EC2Parameters()
        p.add("InstanceId", instanceId)
        p.add("Attribute", "userData")
        return try EC2ResponseDecoder.userData(try await call("DescribeInstanceAttribute", p))
    }

    /// TerminateInstances (idempotent on AWS). An `InvalidInstanceID.NotFound` answer does not
    /// prove the instance is gone (protocols.md §1.5).
    public func terminateInstances(ids: [String]) async throws -> [EC2InstanceStateChange] {
        try EC2Validation.notEmpty(ids, "InstanceId", action: "TerminateInstances")
        var p = EC2Parameters()
        p.addList("InstanceId", ids)
        return try EC2ResponseDecoder.terminateInstances(try await call("TerminateInstances", p))
    }

    // MARK: - Volumes

    /// Creates an encrypted volume (`Encrypted=true` always; `KmsKeyId` when given).
    public func createVolume(_ request: CreateVolumeRequest) async throws -> EC2Volume {
        try EC2Validation.createVolume(request)
        var p = EC2Parameters()
        p.add("AvailabilityZone", request.availabilityZone)
        p.add("Size", String(request.sizeGiB))
        p.add("VolumeType", request.volumeType)
        p.add("Encrypted", "true")
        p.add("KmsKeyId", request.kmsKeyId)
        p.add("ClientToken", request.clientToken)
        p.addTagSpecifications([("volume", request.tags)])
        return try EC2ResponseDecoder.createVolume(try await call("CreateVolume", p))
    }

    public func attachVolume(volumeId: String, instanceId: String, device: String) async throws -> EC2VolumeAttachment {
        var p = EC2Parameters()
        p.add("VolumeId", volumeId)
        p.add("InstanceId", instanceId)
        p.add("Device", device)
        return try EC2ResponseDecoder.attachVolume(try await call("AttachVolume", p))
    }

    /// One page of DescribeVolumes by ids and/or filters. Unknown ids fail the whole call with
    /// `InvalidVolume.NotFound`; a `volume-id` filter does not.
    public func describeVolumes(
        volumeIds: [String] = [], filters: [EC2Filter] = [], maxResults: Int? = nil, nextToken: String? = nil
    ) async throws -> EC2Page<EC2Volume> {
        var p = EC2Parameters()
        p.addList("VolumeId", volumeIds)
        p.addFilters(filters)
        p.add("MaxResults", maxResults.map(String.init))
        p.add("NextToken", nextToken)
        let paged = !filters.isEmpty || maxResults != nil || nextToken != nil
        return try EC2ResponseDecoder.describeVolumes(try await call("DescribeVolumes", p, filteredOrPaginated: paged))
    }

    /// Follows `nextToken` until the last page.
    public func describeAllVolumes(volumeIds: [String] = [], filters: [EC2Filter] = []) async throws -> [EC2Volume] {
        try await allPages { try await describeVolumes(volumeIds: volumeIds, filters: filters, nextToken: $0) }
    }

    /// Calls `page` with each `nextToken` until the last page, collecting the items.
    func allPages<Item>(_ page: (String?) async throws -> EC2Page<Item>) async throws -> [Item] {
        var items: [Item] = []
        var token: String?
        repeat {
            let next = try await page(token)
            items += next.items
            token = next.nextToken
        } while token != nil
        return items
    }

    public func deleteVolume(volumeId: String) async throws {
        var p = EC2Parameters()
        p.add("VolumeId", volumeId)
        try EC2ResponseDecoder.booleanReturn(try await call("DeleteVolume", p), action: "DeleteVolume")
    }

    // MARK: - Tags

    public func createTags(resourceIds: [String], tags: [EC2Tag]) async throws {
        try EC2Validation.notEmpty(resourceIds, "ResourceId", action: "CreateTags")
        try EC2Validation.notEmpty(tags.map(\.key), "Tag", action: "CreateTags")
        var p = EC2Parameters()
        p.addList("ResourceId", resourceIds)
        p.addTags("Tag", tags)
        try EC2ResponseDecoder.booleanReturn(try await call("CreateTags", p), action: "CreateTags")
    }

    // MARK: - Transport

    /// The exact form body sent for `action` with `parameters`.
    static func formBody(action: String, parameters: [(String, String)]) -> String {
        PercentEncoding.formEncode([("Action", action), ("Version", apiVersion)] + parameters)
    }

    private func call(_ action: String, _ parameters: EC2Parameters, filteredOrPaginated: Bool = false) async throws
        -> XMLElementNode
    {
        try await perform(action: action, parameters: parameters.pairs, filteredOrPaginated: filteredOrPaginated)
    }

    /// Sends any Query API action and returns the parsed 2xx body; non-2xx answers, transport
    /// failures and credential failures are thrown as ``EC2Error``.
    public func perform(action: String, parameters: [(String, String)], filteredOrPaginated: Bool = false) async throws
        -> XMLElementNode
    {
        let body = Data(Self.formBody(action: action, parameters: parameters).utf8)
        var sentAgain = false
        while true {
            try await rateLimiter?.acquire(action: action, filteredOrPaginated: filteredOrPaginated)
            let used = try await currentCredentials(action: action)
            let unsigned = HTTPRequestData(
                method: "POST", url: endpoint, headers: [("Content-Type", Self.contentType)], body: body)
            var request = signer.sign(unsigned, credentials: used, date: now().addingTimeInterval(clockSkew.current))
            request.headers.append(("User-Agent", Self.userAgent))  // not signed

            let response: HTTPResponseData
            do {
                response = try await transport.send(request, timeout: timeout)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                throw EC2Error.transport(error, action: action)
            }
            let skewChanged = clockSkew.observe(dateHeader: response.header("Date"), localNow: now())

            if (200..<300).contains(response.status) {
                do {
                    return try XMLElementNode.parse(response.body)
                } catch {
                    throw EC2ResponseDecoder.malformed(action, String(describing: error))
                }
            }
            var error = EC2ResponseDecoder.error(body: response.body, httpStatus: response.status, action: action)
            error.retryAfter = Self.retryAfter(response)
            // Sent again at once, once, when that can help: signed with the server's time, or with the
            // credentials a re-read gives when AWS refused these (rotated keys, renewed temporary ones).
            if !sentAgain, error.mayBeClockSkew && skewChanged {
                sentAgain = true
                continue
            }
            if !sentAgain, error.credentialsRejected, await renewed(used) {
                sentAgain = true
                continue
            }
            throw error
        }
    }

    private func currentCredentials(action: String) async throws -> AWSCredentials {
        do {
            return try await credentials.credentials()
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw EC2Error(
                code: "CredentialsUnavailable", message: String(describing: error), httpStatus: nil, action: action,
                kind: .authentication)
        }
    }

    /// Drops `used` from the provider's cache and reads the credentials again; true when that gives
    /// others (a failure to read them is for the next call to report).
    private func renewed(_ used: AWSCredentials) async -> Bool {
        await credentials.invalidate(used)
        guard let fresh = try? await credentials.credentials() else { return false }
        return fresh != used
    }

    /// `x-amz-retry-after` (milliseconds) or `Retry-After` (seconds; an HTTP date is not honoured).
    static func retryAfter(_ response: HTTPResponseData) -> Duration? {
        if let text = response.header("x-amz-retry-after"), let milliseconds = Int64(text.trimmingCharacters(in: .whitespaces)),
            milliseconds >= 0
        {
            return .milliseconds(milliseconds)
        }
        if let text = response.header("Retry-After"), let seconds = Int64(text.trimmingCharacters(in: .whitespaces)), seconds >= 0 {
            return .seconds(seconds)
        }
        return nil
    }
}
