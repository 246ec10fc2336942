import Foundation
import OneTouchCore
import OneTouchEC2
import Testing

/// Live checks against a real `moto_server` (protocols.md §2.3, §3). Skipped unless
/// `ONETOUCH_MOTO_URL` is set. moto verifies SigV4 only when started with
/// `INITIAL_NO_AUTH_ACTION_COUNT`; these tests spend the three unauthenticated calls on IAM
/// CreateUser, PutUserPolicy (allow all) and CreateAccessKey, so the server must be fresh:
///
///     INITIAL_NO_AUTH_ACTION_COUNT=3 moto_server -H 127.0.0.1 -p 5055 &   # note $!
///     ONETOUCH_MOTO_URL=http://127.0.0.1:5055 swift test --filter MotoIntegrationTests
///     kill <pid>
///
/// Alternatively pass an existing key pair in `ONETOUCH_MOTO_ACCESS_KEY_ID` and
/// `ONETOUCH_MOTO_SECRET_ACCESS_KEY` to skip the IAM setup.
enum MotoServer {
    static let environment = ProcessInfo.processInfo.environment
    static let url: URL? = environment["ONETOUCH_MOTO_URL"].flatMap { URL(string: $0) }
    static let region = "us-east-1"

    /// One IAM user per test process, created on first use.
    static let account = MotoAccount()
}

actor MotoAccount {
    private var keys: Task<AWSCredentials, any Error>?

    func credentials() async throws -> AWSCredentials {
        if let keys { return try await keys.value }
        let task = Task { try await Self.provision() }
        keys = task
        return try await task.value
    }

    private static func provision() async throws -> AWSCredentials {
        if let id = MotoServer.environment["ONETOUCH_MOTO_ACCESS_KEY_ID"],
            let secret = MotoServer.environment["ONETOUCH_MOTO_SECRET_ACCESS_KEY"]
        {
            return AWSCredentials(accessKeyId: id, secretAccessKey: secret)
        }
        let user = "onetouch-test-\(UUID().uuidString.prefix(8))"
        let policy = #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#
        _ = try await iam("CreateUser", [("UserName", user)])
        _ = try await iam("PutUserPolicy", [("UserName", user), ("PolicyName", "all"), ("PolicyDocument", policy)])
        let created = try await iam("CreateAccessKey", [("UserName", user)])
        guard let key = created.child(path: "CreateAccessKeyResult", "AccessKey"),
            let id = key.nonEmptyValue("AccessKeyId"), let secret = key.nonEmptyValue("SecretAccessKey")
        else {
            throw MotoSetupError("CreateAccessKey answer lacks AccessKeyId/SecretAccessKey")
        }
        return AWSCredentials(accessKeyId: id, secretAccessKey: secret)
    }

    /// A raw IAM Query call, signed with throw-away keys (moto accepts anything while the
    /// unauthenticated allowance lasts).
    private static func iam(_ action: String, _ parameters: [(String, String)]) async throws -> XMLElementNode {
        guard let url = MotoServer.url else { throw MotoSetupError("ONETOUCH_MOTO_URL not set") }
        let body = ([("Action", action), ("Version", "2010-05-08")] + parameters).map { name, value in
            "\(name)=\(value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? value)"
        }.joined(separator: "&")
        let unsigned = HTTPRequestData(
            method: "POST", url: url, headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
            body: Data(body.utf8))
        let request = SigV4Signer(region: MotoServer.region, service: "iam").sign(
            unsigned, credentials: AWSCredentials(accessKeyId: "AKIASETUP", secretAccessKey: "setup"), date: Date())
        let response = try await URLSessionTransport().send(request, timeout: .seconds(10))
        guard response.status == 200 else {
            throw MotoSetupError(
                "IAM \(action) got HTTP \(response.status) - start moto fresh with INITIAL_NO_AUTH_ACTION_COUNT=3: "
                    + String(decoding: response.body.prefix(300), as: UTF8.self))
        }
        return try XMLElementNode.parse(response.body)
    }
}

struct MotoSetupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

@Suite("Live checks against moto_server", .enabled(if: MotoServer.url != nil, "ONETOUCH_MOTO_URL not set"))
struct MotoIntegrationTests {
    static func client(_ credentials: AWSCredentials) throws -> EC2Client {
        EC2Client(
            credentials: StaticCredentialsProvider(credentials), region: MotoServer.region,
            endpoint: try #require(MotoServer.url), transport: URLSessionTransport())
    }

    @Test func rightSecretIsAcceptedAndWrongSecretIsAuthFailure() async throws {
        let credentials = try await MotoServer.account.credentials()
        _ = try await Self.client(credentials).describeInstances(filters: [EC2Filter("tag-key", ["onetouch-none"])])

        let wrongSecret = "wrong-\(credentials.secretAccessKey)"
        let wrong = AWSCredentials(accessKeyId: credentials.accessKeyId, secretAccessKey: wrongSecret)
        await #expect {
            _ = try await Self.client(wrong).describeInstances(filters: [EC2Filter("tag-key", ["onetouch-none"])])
        } throws: { error in
            guard let error = error as? EC2Error else { return false }
            let text = String(describing: error)
            return error.kind == .authentication && error.code == "AuthFailure" && error.httpStatus == 401
                && text.contains("AuthFailure: AWS was not able to validate the provided access credentials")
                && !text.contains(wrongSecret)
        }
    }

    /// Exercises every operation once and checks the decoders against moto's real XML.
    @Test func instanceAndVolumeLifecycle() async throws {
        let client = try Self.client(try await MotoServer.account.credentials())
        let tag = EC2Tag("vmprov:request", "req-\(UUID().uuidString.prefix(8))")
        let userData = Data("#cloud-config\nruncmd: [echo hi]\n".utf8)

        let launched = try await client.runInstance(
            RunInstanceRequest(
                imageId: "ami-12c6146b", instanceType: "t3.micro", userData: userData, metadataHopLimit: 2,
                rootVolume: .init(deviceName: "/dev/xvda", sizeGiB: 12), instanceTags: [tag], volumeTags: [tag],
                clientToken: "tok-\(tag.value)"))
        #expect(launched.state.name == .pending)
        #expect(launched.clientToken == "tok-\(tag.value)")
        #expect(launched.tags[tag.key] == tag.value)
        #expect(launched.metadataOptions?.httpTokens == "required")
        #expect(launched.metadataOptions?.httpPutResponseHopLimit == 2)
        #expect(launched.launchTime != nil)
        #expect(launched.blockDeviceMappings.first?.deviceName == "/dev/xvda")

        let found = try await client.describeAllInstances(filters: [EC2Filter("tag:\(tag.key)", [tag.value])])
        #expect(found.map(\.id) == [launched.id])
        #expect(found.first?.state.name == .running)
        let zone = try #require(found.first?.availabilityZone)
        #expect(try await client.describeInstanceUserData(instanceId: launched.id) == userData)

        let volume = try await client.createVolume(
            CreateVolumeRequest(availabilityZone: zone, sizeGiB: 3, tags: [tag], clientToken: "vol-\(tag.value)"))
        #expect(volume.encrypted)
        #expect(volume.kmsKeyId != nil)
        let attachment = try await client.attachVolume(volumeId: volume.id, instanceId: launched.id, device: "/dev/sdf")
        #expect(attachment.state == .attaching)
        let volumes = try await client.describeAllVolumes(filters: [EC2Filter("attachment.instance-id", [launched.id])])
        let data = try #require(volumes.first { $0.id == volume.id })
        #expect(data.state == .inUse)
        #expect(data.attachments.map(\.state) == [.attached])

        try await client.createTags(resourceIds: [launched.id, volume.id], tags: [EC2Tag("Name", "vm1")])
        let changes = try await client.terminateInstances(ids: [launched.id])
        #expect(changes.map(\.currentState.name) == [.shuttingDown])

        await #expect {
            _ = try await client.describeInstances(instanceIds: ["i-0000000000000dead"])
        } throws: { error in
            (error as? EC2Error)?.kind == .notFoundMaybeEventual
        }
        try await client.deleteVolume(volumeId: volume.id)
    }
}
