import Foundation
import OneTouchEC2
import Testing

@Suite("EC2 XML decoding")
struct EC2XMLTests {
    static func parse(_ xml: String) throws -> XMLElementNode {
        try XMLElementNode.parse(Data(xml.utf8))
    }

    @Test func elementsAreMatchedByLocalNameWhateverTheNamespace() throws {
        for namespace in [" xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"", " xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15\"", ""] {
            let root = try Self.parse("<A\(namespace)><b> x </b><c><item>1</item><item>2</item></c></A>")
            #expect(root.name == "A")
            #expect(root.value("b") == "x")
            #expect(root.items("c").map(\.trimmedText) == ["1", "2"])
        }
        let prefixed = try Self.parse("<ec2:A xmlns:ec2=\"urn:x\"><ec2:b>y</ec2:b></ec2:A>")
        #expect(prefixed.name == "A")
        #expect(prefixed.value("b") == "y")
    }

    @Test func malformedXMLThrows() {
        #expect(throws: XMLParseError.self) { try Self.parse("<A><b></A>") }
    }

    @Test func runInstancesDecodesTheLaunchedInstance() throws {
        let instance = try EC2ResponseDecoder.runInstances(try Self.parse(EC2XMLSamples.runInstances))
        #expect(instance.id == "i-0123456789abcdef0")
        #expect(instance.reservationId == "r-0a1b2c3d")
        #expect(instance.state == EC2InstanceState(name: .pending, code: 0))
        #expect(instance.imageId == "ami-0abcdef1234567890")
        #expect(instance.instanceType == "t3.micro")
        #expect(instance.privateIpAddress == "10.0.1.23")
        #expect(instance.availabilityZone == "us-east-1a")
        #expect(instance.subnetId == "subnet-0123")
        #expect(instance.clientToken == "tok-raw-1")
        #expect(instance.tags == ["vmprov:request": "req-raw", "Name": "vm1"])
        #expect(
            instance.metadataOptions
                == EC2MetadataOptions(httpTokens: "required", httpPutResponseHopLimit: 2, httpEndpoint: "enabled", state: "applied"))
        #expect(instance.iamInstanceProfileArn == "arn:aws:iam::123456789012:instance-profile/prov-ip")
        #expect(
            instance.blockDeviceMappings == [
                EC2InstanceBlockDevice(deviceName: "/dev/xvda", volumeId: "vol-0root", status: "attached", deleteOnTermination: true)
            ])
        #expect(instance.launchTime == (try Date.ISO8601FormatStyle().parse("2026-11-27T09:00:00Z")))
    }

    @Test func describeInstancesFlattensReservationsAndKeepsNextToken() throws {
        let page = try EC2ResponseDecoder.describeInstances(try Self.parse(EC2XMLSamples.describeInstancesPage1))
        #expect(page.items.map(\.id) == ["i-1", "i-2"])
        #expect(page.items.map(\.reservationId) == ["r-1", "r-2"])
        #expect(page.nextToken == "page-2-token")
    }

    @Test func instanceStateCodeKeepsOnlyTheLowByte() throws {
        let page = try EC2ResponseDecoder.describeInstances(try Self.parse(EC2XMLSamples.describeInstancesPage1))
        #expect(page.items[1].state == EC2InstanceState(name: .running, code: 16))
    }

    @Test func emptyOrMissingNextTokenMeansLastPage() throws {
        let last = try EC2ResponseDecoder.describeInstances(try Self.parse(EC2XMLSamples.describeInstancesLastPage))
        #expect(last.items.map(\.state.name) == [.terminated])
        #expect(last.nextToken == nil)
        let empty = try EC2ResponseDecoder.describeInstances(try Self.parse(EC2XMLSamples.describeInstancesEmpty))
        #expect(empty.items.isEmpty)
        #expect(empty.nextToken == nil)
    }

    @Test func createVolumeDecodesEncryptionAndTags() throws {
        let volume = try EC2ResponseDecoder.createVolume(try Self.parse(EC2XMLSamples.createVolume))
        #expect(
            volume
                == EC2Volume(
                    id: "vol-0data", sizeGiB: 10, availabilityZone: "us-east-1a", state: .creating, volumeType: "gp3",
                    encrypted: true, kmsKeyId: "arn:aws:kms:us-east-1:123456789012:key/abcd", tags: ["vmprov:request": "req-1"]))
    }

    @Test func attachVolumeDecodesTheAttachment() throws {
        let attachment = try EC2ResponseDecoder.attachVolume(try Self.parse(EC2XMLSamples.attachVolume))
        #expect(attachment == EC2VolumeAttachment(volumeId: "vol-0data", instanceId: "i-1", device: "/dev/sdf", state: .attaching))
    }

    @Test func describeVolumesDecodesAttachmentsAndNextToken() throws {
        let page = try EC2ResponseDecoder.describeVolumes(try Self.parse(EC2XMLSamples.describeVolumes))
        #expect(page.nextToken == "vol-page-2")
        #expect(page.items.count == 2)
        #expect(page.items[0].state == .inUse)
        #expect(
            page.items[0].attachments == [
                EC2VolumeAttachment(volumeId: "vol-0data", instanceId: "i-1", device: "/dev/sdf", state: .attached)
            ])
        #expect(page.items[0].tags == ["role": "data"])
        #expect(page.items[1].state == .available)
        #expect(page.items[1].attachments.isEmpty)
        #expect(page.items[1].encrypted == false)
        #expect(page.items[1].kmsKeyId == nil)
    }

    @Test func terminateInstancesDecodesStateChanges() throws {
        let changes = try EC2ResponseDecoder.terminateInstances(try Self.parse(EC2XMLSamples.terminateInstances))
        #expect(
            changes == [
                EC2InstanceStateChange(
                    instanceId: "i-1", currentState: .init(name: .shuttingDown, code: 32), previousState: .init(name: .running, code: 16)),
                EC2InstanceStateChange(
                    instanceId: "i-2", currentState: .init(name: .terminated, code: 48), previousState: .init(name: .terminated, code: 48)),
            ])
    }

    @Test func userDataIsBase64DecodedOrNilWhenAbsent() throws {
        #expect(try EC2ResponseDecoder.userData(try Self.parse(EC2XMLSamples.userData)) == Data("#cloud-config\n".utf8))
        #expect(try EC2ResponseDecoder.userData(try Self.parse(EC2XMLSamples.userDataAbsent)) == nil)
    }

    @Test func deleteVolumeAndCreateTagsAcceptMissingReturn() throws {
        try EC2ResponseDecoder.booleanReturn(try Self.parse(EC2XMLSamples.deleteVolumeAWS), action: "DeleteVolume")
        try EC2ResponseDecoder.booleanReturn(try Self.parse(EC2XMLSamples.deleteVolumeMoto), action: "DeleteVolume")
        try EC2ResponseDecoder.booleanReturn(try Self.parse(EC2XMLSamples.createTagsMoto), action: "CreateTags")
        #expect(throws: EC2Error.self) {
            try EC2ResponseDecoder.booleanReturn(
                try Self.parse("<CreateTagsResponse><return>false</return></CreateTagsResponse>"), action: "CreateTags")
        }
    }

    @Test func successBodyWithoutInstanceIsMalformed() throws {
        #expect {
            try EC2ResponseDecoder.runInstances(try Self.parse("<RunInstancesResponse><instancesSet/></RunInstancesResponse>"))
        } throws: { error in
            (error as? EC2Error)?.code == "MalformedResponse"
        }
    }

    @Test func ec2ErrorShapeYieldsCodeMessageAndRequestID() {
        let error = EC2ResponseDecoder.error(
            body: Data(EC2XMLSamples.ec2Error("InvalidInstanceID.NotFound", "The instance ID 'i-1a2b3c4d' does not exist").utf8),
            httpStatus: 400, action: "DescribeInstances")
        #expect(error.code == "InvalidInstanceID.NotFound")
        #expect(error.message == "The instance ID 'i-1a2b3c4d' does not exist")
        #expect(error.requestID == "ea966190-f9aa-478e-9ede-example")
        #expect(error.httpStatus == 400)
        #expect(error.kind == .notFoundMaybeEventual)
    }

    @Test func motoAuthErrorShapeIsUnderstood() {
        let error = EC2ResponseDecoder.error(body: Data(EC2XMLSamples.motoAuthFailure.utf8), httpStatus: 401, action: "DescribeInstances")
        #expect(error.code == "AuthFailure")
        #expect(error.message == "AWS was not able to validate the provided access credentials")
        #expect(error.requestID == nil)
        #expect(error.kind == .authentication)
    }

    @Test func nonXMLErrorBodyBecomesHTTPStatusCode() {
        let html = "<!doctype html>\n<html><title>500 Internal Server Error</title><p>NotImplementedError</p></html>"
        let error = EC2ResponseDecoder.error(body: Data(html.utf8), httpStatus: 500, action: "DescribeInstances")
        #expect(error.code == "HTTP500")
        #expect(error.kind == .transient)
        #expect(error.message.contains("500 Internal Server Error"))
        #expect(!error.message.contains("\n"))
    }
}
