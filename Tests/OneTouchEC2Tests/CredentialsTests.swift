import Foundation
import OneTouchCore
import Testing

@testable import OneTouchEC2

@Suite("Credential chain and shared files")
struct CredentialsTests {
    /// IMDS must never be reached in these tests unless a test wants it.
    static let noIMDS = FakeTransport { _ in throw HTTPTransportError.connectionFailed("no IMDS in tests") }

    @Test func descriptionsNeverContainTheSecretOrToken() {
        let credentials = AWSCredentials(
            accessKeyId: "AKIAEXAMPLE", secretAccessKey: "very-secret-key", sessionToken: "session-token-value")
        var dumped = ""
        dump(credentials, to: &dumped)
        for text in [credentials.description, credentials.debugDescription, "\(credentials)", String(reflecting: credentials), dumped] {
            #expect(text.contains("AKIAEXAMPLE"))
            #expect(!text.contains("very-secret-key"))
            #expect(!text.contains("session-token-value"))
        }
    }

    @Test func environmentCredentialsComeFirst() async throws {
        let home = try TemporaryDirectory()
        _ = try home.write("credentials", "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = filesecret\n")
        let chain = AWSCredentialsChain.standard(
            environment: [
                "AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "envsecret", "AWS_SESSION_TOKEN": "envtoken",
                "AWS_SHARED_CREDENTIALS_FILE": home.path + "/credentials",
            ], transport: Self.noIMDS)
        let credentials = try await chain.credentials()
        #expect(credentials.accessKeyId == "ENVKEY")
        #expect(credentials.secretAccessKey == "envsecret")
        #expect(credentials.sessionToken == "envtoken")
        #expect(credentials.source == "environment")
    }

    @Test func partialEnvironmentCredentialsStopTheChain() async throws {
        let chain = AWSCredentialsChain.standard(environment: ["AWS_ACCESS_KEY_ID": "ENVKEY"], transport: Self.noIMDS)
        await #expect(throws: AWSCredentialsError.self) { try await chain.credentials() }
        #expect(Self.noIMDS.requests.isEmpty)
    }

    @Test func defaultProfileIsReadFromHomeCredentialsFile() async throws {
        let home = try TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: home.path + "/.aws", withIntermediateDirectories: true)
        _ = try home.write(
            ".aws/credentials",
            """
            # comment
            [other]
            aws_access_key_id = OTHER
            aws_secret_access_key = othersecret

            [default]
            aws_access_key_id = DEFAULTKEY
            aws_secret_access_key = default/secret+with=chars
            aws_session_token = tok
            """)
        let credentials = try await SharedFileCredentialsProvider(environment: ["HOME": home.path]).credentials()
        #expect(credentials.accessKeyId == "DEFAULTKEY")
        #expect(credentials.secretAccessKey == "default/secret+with=chars")
        #expect(credentials.sessionToken == "tok")
        #expect(credentials.source == "profile default")
    }

    @Test func awsProfileSelectsProfileSectionOfConfigFile() async throws {
        let home = try TemporaryDirectory()
        let config = try home.write(
            "config",
            """
            [default]
            region = eu-west-1
            [profile  prov]
            aws_access_key_id = CONFIGKEY
            aws_secret_access_key = configsecret
            region = us-west-2
            """)
        let environment = [
            "AWS_PROFILE": "prov", "AWS_CONFIG_FILE": config, "AWS_SHARED_CREDENTIALS_FILE": home.path + "/missing",
        ]
        let credentials = try await SharedFileCredentialsProvider(environment: environment).credentials()
        #expect(credentials.accessKeyId == "CONFIGKEY")
        #expect(try AWSSharedConfig(environment: environment).region == "us-west-2")
    }

    @Test func credentialsFileWinsOverConfigFileForTheSameProfile() async throws {
        let home = try TemporaryDirectory()
        let credentialsFile = try home.write("credentials", "[prov]\naws_access_key_id = CREDKEY\naws_secret_access_key = credsecret\n")
        let configFile = try home.write("config", "[profile prov]\naws_access_key_id = CONFIGKEY\naws_secret_access_key = configsecret\n")
        let credentials = try await SharedFileCredentialsProvider(environment: [
            "AWS_PROFILE": "prov", "AWS_SHARED_CREDENTIALS_FILE": credentialsFile, "AWS_CONFIG_FILE": configFile,
        ]).credentials()
        #expect(credentials.accessKeyId == "CREDKEY")
        #expect(credentials.secretAccessKey == "credsecret")
    }

    @Test func explicitlyChosenMissingProfileIsAnErrorNotAFallThrough() async throws {
        let home = try TemporaryDirectory()
        let chain = AWSCredentialsChain.standard(environment: ["HOME": home.path, "AWS_PROFILE": "nope"], transport: Self.noIMDS)
        await #expect {
            try await chain.credentials()
        } throws: { error in
            guard case AWSCredentialsError.invalid(_, let reason) = error else { return false }
            return reason.contains("'nope' not found")
        }
        #expect(Self.noIMDS.requests.isEmpty)
    }

    @Test func noSourceGivesOneReasonPerSource() async throws {
        let home = try TemporaryDirectory()
        let chain = AWSCredentialsChain.standard(
            environment: ["HOME": home.path, "AWS_EC2_METADATA_DISABLED": "true"], transport: Self.noIMDS)
        await #expect {
            try await chain.credentials()
        } throws: { error in
            guard case AWSCredentialsError.noCredentials(let reasons) = error else { return false }
            // environment, web identity, shared files, credential_process, instance metadata
            return reasons.count == 5 && reasons[4].contains("AWS_EC2_METADATA_DISABLED")
        }
    }

    @Test func chainCachesLongTermCredentials() async throws {
        let home = try TemporaryDirectory()
        let file = try home.write("credentials", "[default]\naws_access_key_id = K1\naws_secret_access_key = S1\n")
        let chain = AWSCredentialsChain.standard(
            environment: ["AWS_SHARED_CREDENTIALS_FILE": file, "AWS_CONFIG_FILE": home.path + "/none"], transport: Self.noIMDS)
        #expect(try await chain.credentials().accessKeyId == "K1")
        _ = try home.write("credentials", "[default]\naws_access_key_id = K2\naws_secret_access_key = S2\n")
        #expect(try await chain.credentials().accessKeyId == "K1")
    }

    @Test func iniParserHandlesCommentsNestingAndSpacing() {
        let sections = AWSSharedConfig.parse(
            """
            ; leading comment
            [profile a]
            Region=us-east-1
            services = local
            [services local]
            ec2 =
              endpoint_url = http://127.0.0.1:5055
            """)
        #expect(sections["profile a"]?["region"] == "us-east-1")
        #expect(sections["services local"]?["ec2.endpoint_url"] == "http://127.0.0.1:5055")
    }
}
