import Foundation
import OneTouchCore
import OneTouchEC2
import Synchronization
import Testing

@Suite("Instance role credentials through IMDSv2")
struct InstanceMetadataCredentialsTests {
    static let start = Date(timeIntervalSince1970: 1_700_000_000)  // 2023-11-14T22:13:20Z

    /// A fake IMDS whose role credentials expire one hour after `issuedAt()`, numbered per fetch.
    static func imds(
        role: String? = "prov-role", issuedAt: @escaping @Sendable () -> Date = { start },
        failCredentials: Flag? = nil
    ) -> FakeTransport {
        let counter = Mutex(0)
        return FakeTransport { request in
            switch (request.method, request.url.path(percentEncoded: true)) {
            case ("PUT", "/latest/api/token"):
                guard request.header("X-aws-ec2-metadata-token-ttl-seconds") == "21600" else {
                    return HTTPResponseData(status: 400)
                }
                return HTTPResponseData(status: 200, body: Data("imds-token".utf8))
            case ("GET", _) where request.header("X-aws-ec2-metadata-token") != "imds-token":
                return HTTPResponseData(status: 401)
            case ("GET", "/latest/meta-data/iam/security-credentials/"):
                guard let role else { return HTTPResponseData(status: 404) }
                return HTTPResponseData(status: 200, body: Data("\(role)\n".utf8))
            case ("GET", "/latest/meta-data/iam/security-credentials/\(role ?? "")"):
                if failCredentials?.isSet == true { return HTTPResponseData(status: 500) }
                let n = counter.withLock { value in
                    value += 1
                    return value
                }
                let expiration = issuedAt().addingTimeInterval(3600)
                let json = """
                    {"Code":"Success","LastUpdated":"2023-11-14T22:13:20Z","Type":"AWS-HMAC",
                     "AccessKeyId":"ASIAROLE\(n)","SecretAccessKey":"rolesecret\(n)","Token":"roletoken\(n)",
                     "Expiration":"\(expiration.formatted(.iso8601))"}
                    """
                return HTTPResponseData(status: 200, body: Data(json.utf8))
            default:
                return HTTPResponseData(status: 404)
            }
        }
    }

    @Test func fetchesTokenThenRoleThenCredentials() async throws {
        let transport = Self.imds()
        let provider = InstanceMetadataCredentialsProvider(environment: [:], transport: transport, now: { Self.start })
        let credentials = try await provider.credentials()
        #expect(credentials.accessKeyId == "ASIAROLE1")
        #expect(credentials.secretAccessKey == "rolesecret1")
        #expect(credentials.sessionToken == "roletoken1")
        #expect(credentials.expiration == Self.start.addingTimeInterval(3600))
        #expect(credentials.source == "instance role prov-role")
        let calls = transport.requests.map { "\($0.method) \($0.url.absoluteString)" }
        #expect(
            calls == [
                "PUT http://169.254.169.254/latest/api/token",
                "GET http://169.254.169.254/latest/meta-data/iam/security-credentials/",
                "GET http://169.254.169.254/latest/meta-data/iam/security-credentials/prov-role",
            ])
    }

    @Test func cachedUntilFiveMinutesBeforeExpiryThenRefreshed() async throws {
        let clock = ManualDate(Self.start)
        let transport = Self.imds(issuedAt: { clock.now })
        let provider = InstanceMetadataCredentialsProvider(environment: [:], transport: transport, now: { clock.now })

        #expect(try await provider.credentials().accessKeyId == "ASIAROLE1")
        clock.advance(seconds: 54 * 60)  // 6 minutes left: still cached
        #expect(try await provider.credentials().accessKeyId == "ASIAROLE1")
        #expect(transport.requests.count == 3)

        clock.advance(seconds: 61)  // under 5 minutes left: refresh
        #expect(try await provider.credentials().accessKeyId == "ASIAROLE2")
        #expect(transport.requests.count == 6)
    }

    @Test func concurrentCallersShareOneFetch() async throws {
        let transport = Self.imds()
        let provider = InstanceMetadataCredentialsProvider(environment: [:], transport: transport, now: { Self.start })
        let keys = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<8 { group.addTask { try await provider.credentials().accessKeyId } }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(keys == ["ASIAROLE1"])
        #expect(transport.requests.filter { $0.method == "PUT" }.count == 1)
    }

    @Test func failedRefreshFallsBackToUnexpiredCachedCredentials() async throws {
        let clock = ManualDate(Self.start)
        let failing = Flag()
        let transport = Self.imds(issuedAt: { clock.now }, failCredentials: failing)
        let provider = InstanceMetadataCredentialsProvider(environment: [:], transport: transport, now: { clock.now })
        #expect(try await provider.credentials().accessKeyId == "ASIAROLE1")

        failing.set()
        clock.advance(seconds: 57 * 60)  // in the refresh window, not yet expired
        #expect(try await provider.credentials().accessKeyId == "ASIAROLE1")
        clock.advance(seconds: 4 * 60)  // expired: the failure surfaces
        await #expect(throws: AWSCredentialsError.self) { try await provider.credentials() }
    }

    @Test func endpointCanBeOverridden() async throws {
        let transport = Self.imds()
        let provider = InstanceMetadataCredentialsProvider(
            environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1338/"], transport: transport,
            now: { Self.start })
        _ = try await provider.credentials()
        #expect(transport.requests.first?.url.absoluteString == "http://127.0.0.1:1338/latest/api/token")
    }

    @Test func disabledByEnvironmentSendsNothing() async throws {
        let transport = Self.imds()
        let provider = InstanceMetadataCredentialsProvider(
            environment: ["AWS_EC2_METADATA_DISABLED": "TRUE"], transport: transport)
        await #expect {
            try await provider.credentials()
        } throws: { error in
            if case AWSCredentialsError.notConfigured = error { return true }
            return false
        }
        #expect(transport.requests.isEmpty)
    }

    @Test func instanceWithoutRoleIsNotConfigured() async throws {
        let provider = InstanceMetadataCredentialsProvider(environment: [:], transport: Self.imds(role: nil))
        await #expect {
            try await provider.credentials()
        } throws: { error in
            guard case AWSCredentialsError.notConfigured(_, let reason) = error else { return false }
            return reason.contains("no IAM instance profile")
        }
    }

    @Test func chainFallsThroughToInstanceRole() async throws {
        let home = try TemporaryDirectory()
        let chain = AWSCredentialsChain.standard(environment: ["HOME": home.path], transport: Self.imds(), now: { Self.start })
        #expect(try await chain.credentials().accessKeyId == "ASIAROLE1")
    }

    @Test func unreachableIMDSEndsTheChainWithAllReasons() async throws {
        let home = try TemporaryDirectory()
        let transport = FakeTransport { _ in throw HTTPTransportError.timedOut }
        let chain = AWSCredentialsChain.standard(environment: ["HOME": home.path], transport: transport)
        await #expect {
            try await chain.credentials()
        } throws: { error in
            guard case AWSCredentialsError.noCredentials(let reasons) = error else { return false }
            return reasons.count == 5 && reasons[4].contains("IMDS not reachable")
        }
    }
}
