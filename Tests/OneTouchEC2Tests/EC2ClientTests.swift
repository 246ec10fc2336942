import Foundation
import OneTouchCore
import OneTouchEC2
import Testing

@Suite("EC2 client requests")
struct EC2ClientTests {
    static let endpoint = URL(string: "https://ec2.us-east-1.amazonaws.com/")

    static func client(
        _ transport: FakeTransport, credentials: AWSCredentials = exampleCredentials, rateLimiter: EC2RateLimiter? = nil
    ) throws -> EC2Client {
        EC2Client(
            credentials: StaticCredentialsProvider(credentials), region: "us-east-1", endpoint: try #require(endpoint),
            transport: transport, now: { suiteDate }, rateLimiter: rateLimiter)
    }

    /// protocols.md §1.2 writes bodies as space-separated `Name=value` pairs (decoded); compare
    /// the decoded pairs of what was sent with that notation, in order.
    static func pairs(_ body: String) -> [String] {
        body.split(separator: "&").map { pair in
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map {
                $0.removingPercentEncoding ?? String($0)
            }
            return kv.joined(separator: "=")
        }
    }

    static func spec(_ lines: String) -> [String] {
        lines.split(whereSeparator: \.isWhitespace).map(String.init)
    }

    static let protocolsRunInstances = """
        Action=RunInstances  Version=2016-11-15
        ImageId=ami-0abcdef1234567890  InstanceType=t3.micro  MinCount=1  MaxCount=1
        SubnetId=subnet-0123
        SecurityGroupId.1=sg-1  SecurityGroupId.2=sg-2
        UserData=I2Nsb3VkLWNvbmZpZwo=
        IamInstanceProfile.Name=prov-ip
        MetadataOptions.HttpTokens=required
        MetadataOptions.HttpEndpoint=enabled
        MetadataOptions.HttpPutResponseHopLimit=2
        BlockDeviceMapping.1.DeviceName=/dev/xvda
        BlockDeviceMapping.1.Ebs.VolumeSize=20
        BlockDeviceMapping.1.Ebs.VolumeType=gp3
        BlockDeviceMapping.1.Ebs.Encrypted=true
        BlockDeviceMapping.1.Ebs.KmsKeyId=alias/prov
        BlockDeviceMapping.1.Ebs.DeleteOnTermination=true
        TagSpecification.1.ResourceType=instance
        TagSpecification.1.Tag.1.Key=vmprov:request  TagSpecification.1.Tag.1.Value=req-1
        TagSpecification.2.ResourceType=volume
        TagSpecification.2.Tag.1.Key=vmprov:request  TagSpecification.2.Tag.1.Value=req-1
        ClientToken=req-1-attempt
        """

    static let runRequest = RunInstanceRequest(
        imageId: "ami-0abcdef1234567890", instanceType: "t3.micro", subnetId: "subnet-0123", securityGroupIds: ["sg-1", "sg-2"],
        instanceProfile: .name("prov-ip"), userData: Data("#cloud-config\n".utf8), metadataHopLimit: 2,
        rootVolume: .init(deviceName: "/dev/xvda", sizeGiB: 20, volumeType: "gp3", kmsKeyId: "alias/prov"),
        instanceTags: [EC2Tag("vmprov:request", "req-1")], volumeTags: [EC2Tag("vmprov:request", "req-1")],
        clientToken: "req-1-attempt")

    @Test func runInstanceSendsTheProtocolBodyAndSignedHeaders() async throws {
        let transport = FakeTransport(xml: EC2XMLSamples.runInstances)
        let instance = try await Self.client(transport).runInstance(Self.runRequest)
        #expect(instance.id == "i-0123456789abcdef0")

        let request = try #require(transport.requests.first)
        #expect(Self.pairs(request.bodyText) == Self.spec(Self.protocolsRunInstances))
        #expect(
            request.bodyText
                == "Action=RunInstances&Version=2016-11-15&ImageId=ami-0abcdef1234567890&InstanceType=t3.micro&MinCount=1&MaxCount=1"
                + "&SubnetId=subnet-0123&SecurityGroupId.1=sg-1&SecurityGroupId.2=sg-2&UserData=I2Nsb3VkLWNvbmZpZwo%3D"
                + "&IamInstanceProfile.Name=prov-ip&MetadataOptions.HttpTokens=required&MetadataOptions.HttpEndpoint=enabled"
                + "&MetadataOptions.HttpPutResponseHopLimit=2&BlockDeviceMapping.1.DeviceName=%2Fdev%2Fxvda"
                + "&BlockDeviceMapping.1.Ebs.VolumeSize=20&BlockDeviceMapping.1.Ebs.VolumeType=gp3"
                + "&BlockDeviceMapping.1.Ebs.Encrypted=true&BlockDeviceMapping.1.Ebs.KmsKeyId=alias%2Fprov"
                + "&BlockDeviceMapping.1.Ebs.DeleteOnTermination=true&TagSpecification.1.ResourceType=instance"
                + "&TagSpecification.1.Tag.1.Key=vmprov%3Arequest&TagSpecification.1.Tag.1.Value=req-1"
                + "&TagSpecification.2.ResourceType=volume&TagSpecification.2.Tag.1.Key=vmprov%3Arequest"
                + "&TagSpecification.2.Tag.1.Value=req-1&ClientToken=req-1-attempt")
        #expect(request.method == "POST")
        #expect(request.url == Self.endpoint)
        #expect(request.header("Content-Type") == "application/x-www-form-urlencoded; charset=utf-8")
        #expect(request.header("Host") == "ec2.us-east-1.amazonaws.com")
        #expect(request.header("X-Amz-Date") == "20150830T123600Z")
        #expect(
            request.header("Authorization")?.hasPrefix(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="
            ) == true)
    }

    @Test func instanceProfileArnAndMinimalRequest() async throws {
        let transport = FakeTransport(xml: EC2XMLSamples.runInstances)
        _ = try await Self.client(transport).runInstance(
            RunInstanceRequest(
                imageId: "ami-1", instanceType: "t3.micro", instanceProfile: .arn("arn:aws:iam::1:instance-profile/x"),
                clientToken: "t"))
        #expect(
            Self.pairs(try #require(transport.requests.first).bodyText)
                == Self.spec(
                    """
                    Action=RunInstances Version=2016-11-15 ImageId=ami-1 InstanceType=t3.micro MinCount=1 MaxCount=1
                    IamInstanceProfile.Arn=arn:aws:iam::1:instance-profile/x MetadataOptions.HttpTokens=required
                    MetadataOptions.HttpEndpoint=enabled MetadataOptions.HttpPutResponseHopLimit=1 ClientToken=t
                    """))
    }

    @Test(arguments: [String(repeating: "a", count: 65), "", "tök"])
    func invalidClientTokenIsRejectedBeforeSending(token: String) async throws {
        let transport = FakeTransport(xml: EC2XMLSamples.runInstances)
        var request = Self.runRequest
        request.clientToken = token
        await #expect {
            try await Self.client(transport).runInstance(request)
        } throws: { error in
            (error as? EC2Error)?.kind == .invalidRequest
        }
        #expect(transport.requests.isEmpty)
    }

    @Test func sixtyFourCharacterClientTokenIsAccepted() async throws {
        let transport = FakeTransport(xml: EC2XMLSamples.runInstances)
        var request = Self.runRequest
        request.clientToken = String(repeating: "a", count: 64)
        _ = try await Self.client(transport).runInstance(request)
        #expect(transport.requests.count == 1)
    }

    @Test func oversizedUserDataIsRejected() async throws {
        let transport = FakeTransport(xml: EC2XMLSamples.runInstances)
        var request = Self.runRequest
        request.userData = Data(count: RunInstanceRequest.maxUserDataBytes + 1)
        await #expect(throws: EC2Error.self) { try await Self.client(transport).runInstance(request) }
        #expect(transport.requests.isEmpty)
    }

    @Test func userDataOverTheLimitIsSentGzipCompressedAndUnpacksToTheSameText() async throws {
        let script = (0..<900).map { "echo line \($0) of a long bootstrap script" }.joined(separator: "\n")
        let text = Data(("#cloud-config\nruncmd:\n  - |\n" + script).utf8)
        #expect(text.count > RunInstanceRequest.maxUserDataBytes)
        let request = RunInstanceRequest(imageId: "ami-1", instanceType: "t3.small", userData: text, clientToken: "t")
        let sent = try #require(request.userData)
        #expect(sent.prefix(2) == Data([0x1f, 0x8b]), "gzip, which cloud-init recognises")
        #expect(sent.count <= RunInstanceRequest.maxUserDataBytes)
        let gunzip = Process()
        gunzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
        gunzip.arguments = ["-dc"]
        let input = Pipe()
        let output = Pipe()
        gunzip.standardInput = input
        gunzip.standardOutput = output
        try gunzip.run()
        input.fileHandleForWriting.write(sent)
        try input.fileHandleForWriting.close()
        let unpacked = output.fileHandleForReading.readDataToEndOfFile()
        gunzip.waitUntilExit()
        #expect(unpacked == text)
        let small = Data("#cloud-config\n".utf8)
        #expect(RunInstanceRequest(imageId: "ami-1", instanceType: "t3.small", userData: small, clientToken: "t").userData == small)
    }

    @Test func describeInstancesEncodesFiltersAndPagination() async throws {
        let transport = FakeTransport(xml: EC2XMLSamples.describeInstancesPage1)
        let page = try await Self.client(transport).describeInstances(
            filters: [EC2Filter("tag:vmprov:request", ["req-1", "req-2"]), EC2Filter("instance-state-name", ["pending", "running"])],
            maxResults: 100, nextToken: "tok")
        #expect(page.nextToken == "page-2-token")
        #expect(
            Self.pairs(try #require(transport.requests.first).bodyText)
                == Self.spec(
                    """
                    Action=DescribeInstances Version=2016-11-15
                    Filter.1.Name=tag:vmprov:request  Filter.1.Value.1=req-1  Filter.1.Value.2=req-2
                    Filter.2.Name=instance-state-name Filter.2.Value.1=pending Filter.2.Value.2=running
                    MaxResults=100  NextToken=tok
                    """))
    }

    @Test func describeInstancesByIdsUsesInstanceIdList() async throws {
        let transport = FakeTransport(xml: EC2XMLSamples.describeInstancesEmpty)
        _ = try await Self.client(transport).describeInstances(instanceIds: ["i-1", "i-2"])
        #expect(
            Self.pairs(try #require(transport.requests.first).bodyText)
                == Self.spec("Action=DescribeInstances Version=2016-11-15 InstanceId.1=i-1 InstanceId.2=i-2"))
    }

    @Test func maxResultsWithInstanceIdsIsRejectedLikeAWS() async throws {
        let transport = FakeTransport(xml: EC2XMLSamples.describeInstancesEmpty)
        await #expect {
            try await Self.client(transport).describeInstances(instanceIds: ["i-1"], maxResults: 5)
        } throws: { error in
            (error as? EC2Error)?.code == "InvalidParameterCombination"
        }
        #expect(transport.requests.isEmpty)
    }

    @Test func describeAllInstancesFollowsNextToken() async throws {
        let transport = FakeTransport { request in
            let body =
                request.bodyText.contains("NextToken=page-2-token")
                ? EC2XMLSamples.describeInstancesLastPage : EC2XMLSamples.describeInstancesPage1
            return HTTPResponseData(status: 200, body: Data(body.utf8))
        }
        let instances = try await Self.client(transport).describeAllInstances(filters: [EC2Filter("tag-key", ["vmprov:request"])])
        #expect(instances.map(\.id) == ["i-1", "i-2", "i-3"])
        #expect(transport.requests.count == 2)
        #expect(transport.requests.map { Self.pairs($0.bodyText).last } == ["MaxResults=100", "NextToken=page-2-token"])
    }

    @Test func createVolumeIsAlwaysEncrypted() async throws {
        let transport = FakeTransport(xml: EC2XMLSamples.createVolume)
        let volume = try await Self.client(transport).createVolume(
            CreateVolumeRequest(
                availabilityZone: "us-east-1a", sizeGiB: 10, volumeType: "gp3", kmsKeyId: "arn:aws:kms:us-east-1:1:key/k",
                tags: [EC2Tag("k", "v")], clientToken: "vol-req-1"))
        #expect(volume.id == "vol-0data")
        #expect(
            Self.pairs(try #require(transport.requests.first).bodyText)
                == Self.spec(
                    """
                    Action=CreateVolume Version=2016-11-15 AvailabilityZone=us-east-1a Size=10 VolumeType=gp3 Encrypted=true
                      KmsKeyId=arn:aws:kms:us-east-1:1:key/k ClientToken=vol-req-1
                      TagSpecification.1.ResourceType=volume TagSpecification.1.Tag.1.Key=k TagSpecification.1.Tag.1.Value=v
                    """))
    }

    @Test func attachVolumeBody() async throws {
        let transport = FakeTransport(xml: EC2XMLSamples.attachVolume)
        let attachment = try await Self.client(transport).attachVolume(volumeId: "vol-1", instanceId: "i-1", device: "/dev/sdf")
        #expect(attachment.state == .attaching)
        #expect(
            Self.pairs(try #require(transport.requests.first).bodyText)
                == Self.spec("Action=AttachVolume Version=2016-11-15 VolumeId=vol-1 InstanceId=i-1 Device=/dev/sdf"))
    }

    @Test func describeVolumesBody() async throws {
        let transport = FakeTransport(xml: EC2XMLSamples.describeVolumes)
        let page = try await Self.client(transport).describeVolumes(
            volumeIds: ["vol-1"], filters: [EC2Filter("attachment.instance-id", ["i-1"])])
        #expect(page.items.count == 2)
        #expect(
            Self.pairs(try #require(transport.requests.first).bodyText)
                == Self.spec(
                    "Action=DescribeVolumes Version=2016-11-15 VolumeId.1=vol-1 Filter.1.Name=attachment.instance-id Filter.1.Value.1=i-1"
                ))
    }

    @Test func terminateDeleteTagAndUserDataBodies() async throws {
        let transport = FakeTransport { request in
            let action = Self.pairs(request.bodyText).first ?? ""
            let xml: String =
                switch action {
                case "Action=TerminateInstances": EC2XMLSamples.terminateInstances
                case "Action=DeleteVolume": EC2XMLSamples.deleteVolumeMoto
                case "Action=CreateTags": EC2XMLSamples.createTagsMoto
                default: EC2XMLSamples.userData
                }
            return HTTPResponseData(status: 200, body: Data(xml.utf8))
        }
        let client = try Self.client(transport)
        let changes = try await client.terminateInstances(ids: ["i-1", "i-2"])
        try await client.deleteVolume(volumeId: "vol-1")
        try await client.createTags(resourceIds: ["i-1", "vol-1"], tags: [EC2Tag("a", "b")])
        let userData = try await client.describeInstanceUserData(instanceId: "i-1")
        #expect(changes.count == 2)
        #expect(userData == Data("#cloud-config\n".utf8))
        #expect(
            transport.requests.map { Self.pairs($0.bodyText) } == [
                Self.spec("Action=TerminateInstances Version=2016-11-15 InstanceId.1=i-1 InstanceId.2=i-2"),
                Self.spec("Action=DeleteVolume Version=2016-11-15 VolumeId=vol-1"),
                Self.spec("Action=CreateTags Version=2016-11-15 ResourceId.1=i-1 ResourceId.2=vol-1 Tag.1.Key=a Tag.1.Value=b"),
                Self.spec("Action=DescribeInstanceAttribute Version=2016-11-15 InstanceId=i-1 Attribute=userData"),
            ])
    }

    @Test func valuesAreRFC3986Encoded() async throws {
        let transport = FakeTransport(xml: EC2XMLSamples.createTagsMoto)
        try await Self.client(transport).createTags(resourceIds: ["i-1"], tags: [EC2Tag("Name", "a b+c*~é")])
        #expect(
            try #require(transport.requests.first).bodyText
                == "Action=CreateTags&Version=2016-11-15&ResourceId.1=i-1&Tag.1.Key=Name&Tag.1.Value=a%20b%2Bc%2A~%C3%A9")
    }

    @Test func sessionTokenIsSignedIntoEveryCall() async throws {
        let transport = FakeTransport(xml: EC2XMLSamples.deleteVolumeMoto)
        let credentials = AWSCredentials(accessKeyId: "ASIA1", secretAccessKey: "s", sessionToken: "tok")
        try await Self.client(transport, credentials: credentials).deleteVolume(volumeId: "vol-1")
        let request = try #require(transport.requests.first)
        #expect(request.header("X-Amz-Security-Token") == "tok")
        #expect(request.header("Authorization")?.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,") == true)
    }

    // MARK: - Failures

    @Test func throttleResponseBecomesThrottledError() async throws {
        let transport = FakeTransport(status: 503, xml: EC2XMLSamples.ec2Error("RequestLimitExceeded", "Request limit exceeded."))
        await #expect {
            try await Self.client(transport).describeInstances(instanceIds: ["i-1"])
        } throws: { error in
            guard let error = error as? EC2Error else { return false }
            return error.kind == .throttled && error.httpStatus == 503 && error.action == "DescribeInstances"
                && error.requestID == "ea966190-f9aa-478e-9ede-example"
        }
    }

    @Test func authFailureNeverEchoesTheSecret() async throws {
        let transport = FakeTransport(status: 401, xml: EC2XMLSamples.motoAuthFailure)
        await #expect {
            try await Self.client(transport).terminateInstances(ids: ["i-1"])
        } throws: { error in
            guard let error = error as? EC2Error else { return false }
            let text = "\(error)"
            return error.kind == .authentication && text.contains("AuthFailure")
                && !text.contains(exampleCredentials.secretAccessKey)
        }
    }

    @Test(arguments: [HTTPTransportError.timedOut, .connectionFailed("connection refused")])
    func transportFailuresAreTransient(failure: HTTPTransportError) async throws {
        let transport = FakeTransport { _ in throw failure }
        await #expect {
            try await Self.client(transport).deleteVolume(volumeId: "vol-1")
        } throws: { error in
            guard let error = error as? EC2Error else { return false }
            return error.kind == .transient && error.httpStatus == nil
                && error.code == (failure == .timedOut ? "RequestTimeout" : "ConnectionError")
        }
    }

    @Test func garbageSuccessBodyIsMalformedResponse() async throws {
        let transport = FakeTransport(xml: "not xml at all")
        await #expect {
            try await Self.client(transport).attachVolume(volumeId: "vol-1", instanceId: "i-1", device: "/dev/sdf")
        } throws: { error in
            (error as? EC2Error)?.code == "MalformedResponse"
        }
    }

    @Test func missingCredentialsAreAnAuthenticationErrorAndNothingIsSent() async throws {
        let transport = FakeTransport(xml: EC2XMLSamples.deleteVolumeMoto)
        let client = EC2Client(
            credentials: AWSCredentialsChain(providers: [EnvironmentCredentialsProvider(environment: [:])]),
            region: "us-east-1", endpoint: try #require(Self.endpoint), transport: transport)
        await #expect {
            try await client.deleteVolume(volumeId: "vol-1")
        } throws: { error in
            guard let error = error as? EC2Error else { return false }
            return error.kind == .authentication && error.code == "CredentialsUnavailable"
        }
        #expect(transport.requests.isEmpty)
    }

    @Test func callsDrawFromTheirRateBucket() async throws {
        let clock = ManualClock()
        let limiter = EC2RateLimiter(
            configuration: .init(buckets: [.unfilteredNonMutating: TokenBucketSpec(capacity: 1, refillPerSecond: 1)]), clock: clock)
        let transport = FakeTransport(xml: EC2XMLSamples.describeInstancesEmpty)
        let client = try Self.client(transport, rateLimiter: limiter)
        _ = try await client.describeInstances(instanceIds: ["i-1"])
        _ = try await client.describeInstances(filters: [EC2Filter("instance-id", ["i-1"])])  // other bucket
        #expect(clock.sleeps.isEmpty)
        _ = try await client.describeInstances(instanceIds: ["i-1"])
        #expect(clock.sleeps == [.seconds(1)])
        #expect(transport.requests.count == 3)
    }
}
