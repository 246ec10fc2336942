import Foundation
import OneTouchCore
import Synchronization
import Testing

@testable import OneTouchEC2

/// An EC2 endpoint whose clock is `offset` ahead of the client's: like EC2, it refuses a request
/// whose `X-Amz-Date` is more than 15 minutes off (with `code`), and sends its time in `Date`.
struct SkewedEndpoint {
    let serverNow: Date
    let code: String

    static func httpDate(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: date)
    }

    static func amzDate(_ text: String?) -> Date? {
        guard let text else { return nil }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.date(from: text)
    }

    func answer(_ request: HTTPRequestData) -> HTTPResponseData {
        let headers = [("Date", Self.httpDate(serverNow))]
        guard let signed = Self.amzDate(request.header("X-Amz-Date")), abs(signed.timeIntervalSince(serverNow)) <= 900 else {
            let status = code == "AuthFailure" ? 401 : 400
            return HTTPResponseData(
                status: status, headers: headers, body: Data(EC2XMLSamples.ec2Error(code, "Request has expired.").utf8))
        }
        return HTTPResponseData(status: 200, headers: headers, body: Data(EC2XMLSamples.describeInstancesEmpty.utf8))
    }
}

@Suite("Clock skew corrected from the server's Date")
struct ClockSkewTests {
    static func client(
        _ transport: FakeTransport, now: Date, credentials: any AWSCredentialsProvider = StaticCredentialsProvider(exampleCredentials)
    )
        throws -> EC2Client
    {
        EC2Client(
            credentials: credentials, region: "us-east-1", endpoint: try #require(URL(string: "https://ec2.us-east-1.amazonaws.com/")),
            transport: transport, now: { now })
    }

    @Test(arguments: ["AuthFailure", "RequestExpired"])
    func aClockTwentyMinutesSlowIsCorrectedAndTheRequestSentAgainAtOnce(code: String) async throws {
        let endpoint = SkewedEndpoint(serverNow: suiteDate.addingTimeInterval(1200), code: code)
        let transport = FakeTransport { endpoint.answer($0) }
        let client = try Self.client(transport, now: suiteDate)
        _ = try await client.describeInstances()
        #expect(transport.requests.count == 2)
        #expect(transport.requests.map { $0.header("X-Amz-Date") } == ["20150830T123600Z", "20150830T125600Z"])
        _ = try await client.describeInstances()
        #expect(transport.requests.count == 3, "the offset is kept: the next request is signed right the first time")
        #expect(client.clockSkew.current == 1200)
    }

    @Test func aRefusalWhoseServerTimeAgreesIsNotSentAgain() async throws {
        let transport = FakeTransport { _ in
            HTTPResponseData(
                status: 401, headers: [("Date", SkewedEndpoint.httpDate(suiteDate.addingTimeInterval(3)))],
                body: Data(EC2XMLSamples.ec2Error("AuthFailure", "AWS was not able to validate the provided access credentials").utf8))
        }
        let client = try Self.client(transport, now: suiteDate)
        await #expect {
            _ = try await client.describeInstances()
        } throws: { error in
            (error as? EC2Error)?.kind == .authentication
        }
        #expect(transport.requests.count == 1)
        #expect(client.clockSkew.current == 0)
    }

    @Test func aSmallDifferenceIsLeftAloneAndALargeOneReplacesTheOffset() {
        let skew = ClockSkew()
        #expect(!skew.observe(dateHeader: SkewedEndpoint.httpDate(suiteDate.addingTimeInterval(120)), localNow: suiteDate))
        #expect(skew.current == 0)
        #expect(skew.observe(dateHeader: SkewedEndpoint.httpDate(suiteDate.addingTimeInterval(-3600)), localNow: suiteDate))
        #expect(skew.current == -3600)
        #expect(!skew.observe(dateHeader: "not a date", localNow: suiteDate))
        #expect(skew.current == -3600)
    }

    @Test func httpDatesParseAsIMFFixdate() {
        #expect(ClockSkew.parseHTTPDate("Sun, 06 Nov 1994 08:49:37 GMT") == Date(timeIntervalSince1970: 784_111_777))
        #expect(ClockSkew.parseHTTPDate("Sun, 30 Aug 2015 12:36:00 GMT") == suiteDate)
        #expect(ClockSkew.parseHTTPDate("Tue, 29 Feb 2028 23:59:59 GMT") == Date(timeIntervalSince1970: 1_835_481_599))
        #expect(ClockSkew.parseHTTPDate("Sunday, 06-Nov-94 08:49:37 GMT") == nil)
        #expect(ClockSkew.parseHTTPDate("Sun, 06 Nov 1994 08:49:37 PST") == nil)
    }
}

/// Counts how often credentials were asked for and hands out what `next` says.
final class CountingProvider: AWSCredentialsProvider {
    private let state = Mutex<(calls: Int, invalidated: [String])>((0, []))
    let next: @Sendable (Int) -> AWSCredentials

    init(next: @escaping @Sendable (Int) -> AWSCredentials) { self.next = next }

    var calls: Int { state.withLock { $0.calls } }
    var invalidated: [String] { state.withLock { $0.invalidated } }

    func credentials() async throws -> AWSCredentials {
        next(
            state.withLock {
                $0.calls += 1; return $0.calls
            })
    }

    func invalidate(_ used: AWSCredentials) async {
        state.withLock { $0.invalidated.append(used.accessKeyId) }
    }
}

@Suite("Credentials read again when AWS refuses them")
struct CredentialRenewalTests {
    static let noIMDS = FakeTransport { _ in throw HTTPTransportError.connectionFailed("no IMDS in tests") }

    /// Accepts only requests signed with `key`; refuses others with `code`.
    static func endpoint(accepting key: String, refusing code: String = "AuthFailure") -> FakeTransport {
        FakeTransport { request in
            if request.header("Authorization")?.contains("Credential=\(key)/") == true {
                return HTTPResponseData(status: 200, body: Data(EC2XMLSamples.describeInstancesEmpty.utf8))
            }
            return HTTPResponseData(
                status: code == "AuthFailure" ? 401 : 400, body: Data(EC2XMLSamples.ec2Error(code, "refused").utf8))
        }
    }

    @Test func keysRotatedInTheSharedFileAreUsedWithoutARestart() async throws {
        let home = try TemporaryDirectory()
        let file = try home.write("credentials", "[default]\naws_access_key_id = OLDKEY\naws_secret_access_key = old\n")
        let chain = AWSCredentialsChain.standard(
            environment: [
                "AWS_SHARED_CREDENTIALS_FILE": file, "AWS_CONFIG_FILE": home.path + "/none", "AWS_EC2_METADATA_DISABLED": "true",
            ],
            transport: Self.noIMDS)
        #expect(try await chain.credentials().accessKeyId == "OLDKEY")
        _ = try home.write("credentials", "[default]\naws_access_key_id = NEWKEY\naws_secret_access_key = new\n")

        let transport = Self.endpoint(accepting: "NEWKEY")
        let client = try ClockSkewTests.client(transport, now: suiteDate, credentials: chain)
        _ = try await client.describeInstances()
        #expect(transport.requests.count == 2, "refused once with the old key, then sent again at once with the new one")
        #expect(transport.requests[1].header("Authorization")?.contains("Credential=NEWKEY/") == true)
    }

    @Test func expiredCredentialsThatStayExpiredAreTriedOnceAndPauseTheHostWithARecheck() async throws {
        let transport = Self.endpoint(accepting: "NOBODY", refusing: "RequestExpired")
        let provider = CountingProvider { _ in exampleCredentials }
        let client = try ClockSkewTests.client(transport, now: suiteDate, credentials: provider)
        await #expect {
            _ = try await client.describeInstances()
        } throws: { error in
            guard let error = error as? EC2Error else { return false }
            let step = error.stepError
            return error.code == "RequestExpired" && step.errorClass == .needsHuman && step.retryAfter == .seconds(60)
                && step.hint?.contains("clock") == true
        }
        #expect(transport.requests.count == 1, "the same credentials again cannot help")
        #expect(provider.invalidated == ["AKIDEXAMPLE"], "but they were read again")
        #expect(provider.calls == 2)
    }

    @Test func theChainForgetsOnlyTheCredentialsAWSRefused() async throws {
        let provider = CountingProvider { n in AWSCredentials(accessKeyId: "K\(n)", secretAccessKey: "s") }
        let chain = AWSCredentialsChain(providers: [provider])
        let first = try await chain.credentials()
        #expect(first.accessKeyId == "K1")
        await chain.invalidate(AWSCredentials(accessKeyId: "K0", secretAccessKey: "s"))
        #expect(try await chain.credentials().accessKeyId == "K1", "an older refusal does not drop newer credentials")
        await chain.invalidate(first)
        #expect(try await chain.credentials().accessKeyId == "K2")
        #expect(provider.invalidated == ["K1"], "the provider that gave them hears of it too")
    }

    @Test func expiringCredentialsAreCachedUntilShortlyBeforeTheyExpire() async throws {
        let clock = ManualDate(suiteDate)
        let provider = CountingProvider { n in
            AWSCredentials(accessKeyId: "K\(n)", secretAccessKey: "s", expiration: suiteDate.addingTimeInterval(3600 * Double(n)))
        }
        let chain = AWSCredentialsChain(providers: [provider], now: { clock.now })
        #expect(try await chain.credentials().accessKeyId == "K1")
        clock.advance(seconds: 3000)
        #expect(try await chain.credentials().accessKeyId == "K1")
        #expect(provider.calls == 1)
        clock.advance(seconds: 400)  // within five minutes of the expiration
        #expect(try await chain.credentials().accessKeyId == "K2")
    }
}

@Suite("credential_process")
struct ProcessCredentialsTests {
    /// A profile whose credential_process is `script` (a shell script written to a file).
    static func profile(_ script: String, in home: TemporaryDirectory, arguments: String = "") throws -> [String: String] {
        let path = try home.write("helper.sh", "#!/bin/sh\n" + script)
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: path)
        let config = try home.write("config", "[default]\ncredential_process = \(path) \(arguments)\n")
        return ["AWS_CONFIG_FILE": config, "AWS_SHARED_CREDENTIALS_FILE": home.path + "/none", "AWS_EC2_METADATA_DISABLED": "true"]
    }

    @Test func theProcessOutputIsTheCredentials() async throws {
        let home = try TemporaryDirectory()
        let environment = try Self.profile(
            #"printf '{"Version": 1, "AccessKeyId": "PROCKEY-%s", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": "2030-01-01T00:00:00Z"}' "$1""#,
            in: home, arguments: "'first argument'")
        let chain = AWSCredentialsChain.standard(environment: environment, transport: CredentialRenewalTests.noIMDS)
        let credentials = try await chain.credentials()
        #expect(credentials.accessKeyId == "PROCKEY-first argument")
        #expect(credentials.sessionToken == "t")
        #expect(credentials.expiration == Date(timeIntervalSince1970: 1_893_456_000))
        #expect(credentials.source.contains("credential_process"))
    }

    @Test func theProcessRunsAgainWhenAWSRefusesWhatItGave() async throws {
        let home = try TemporaryDirectory()
        let counter = home.path + "/count"
        let environment = try Self.profile(
            """
            n=$(cat \(counter) 2>/dev/null || echo 0); n=$((n + 1)); echo $n > \(counter)
            printf '{"Version": 1, "AccessKeyId": "KEY%s", "SecretAccessKey": "s"}' $n
            """, in: home)
        let chain = AWSCredentialsChain.standard(environment: environment, transport: CredentialRenewalTests.noIMDS)
        let transport = CredentialRenewalTests.endpoint(accepting: "KEY2", refusing: "RequestExpired")
        let client = try ClockSkewTests.client(transport, now: suiteDate, credentials: chain)
        _ = try await client.describeInstances()
        #expect(transport.requests.count == 2)
        #expect(try String(contentsOfFile: counter, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) == "2")
    }

    @Test func aProcessThatHangsIsStoppedAtItsDeadline() async throws {
        let home = try TemporaryDirectory()
        let environment = try Self.profile("exec sleep 30", in: home)
        let started = ContinuousClock.now
        await #expect {
            _ = try await ProcessCredentialsProvider(environment: environment, timeout: .milliseconds(300)).credentials()
        } throws: { error in
            guard case AWSCredentialsError.invalid(_, let reason) = error else { return false }
            return reason.contains("did not finish within")
        }
        // Stopped, not run to its end: well under the program's 30 s even on a loaded machine (12 s seen).
        #expect(ContinuousClock.now - started < .seconds(25))
    }

    @Test func aFailingProcessIsReportedWithItsErrorsButNeverItsOutput() async throws {
        let home = try TemporaryDirectory()
        let environment = try Self.profile("echo SECRET-ON-STDOUT; echo 'sso session expired' >&2; exit 3", in: home)
        await #expect {
            _ = try await ProcessCredentialsProvider(environment: environment).credentials()
        } throws: { error in
            guard case AWSCredentialsError.invalid(_, let reason) = error else { return false }
            return reason.contains("sso session expired") && reason.contains("3") && !reason.contains("SECRET-ON-STDOUT")
        }
    }

    @Test func anUnknownVersionIsRefused() async throws {
        let home = try TemporaryDirectory()
        let environment = try Self.profile(#"echo '{"Version": 2, "AccessKeyId": "K", "SecretAccessKey": "s"}'"#, in: home)
        await #expect {
            _ = try await ProcessCredentialsProvider(environment: environment).credentials()
        } throws: { error in
            guard case AWSCredentialsError.invalid(_, let reason) = error else { return false }
            return reason.contains("Version 2")
        }
    }

    @Test func commandLinesSplitLikeAShellWithoutExpansion() throws {
        #expect(
            try ShellWords.split(#"/usr/bin/helper --profile 'a b' "c \"d\"" e\ f $HOME"#) == [
                "/usr/bin/helper", "--profile", "a b", #"c "d""#, "e f", "$HOME",
            ])
        #expect(try ShellWords.split("  aws-vault   exec  prod --json ") == ["aws-vault", "exec", "prod", "--json"])
        #expect(throws: ShellWords.Unbalanced.self) { try ShellWords.split("helper 'open") }
    }
}

@Suite("Web identity")
struct WebIdentityTests {
    static let stsAnswer = """
        <AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
          <AssumeRoleWithWebIdentityResult><Credentials>
            <AccessKeyId>ASIAWEBID</AccessKeyId><SecretAccessKey>websecret</SecretAccessKey>
            <SessionToken>websession</SessionToken><Expiration>2030-01-01T00:00:00.5Z</Expiration>
          </Credentials></AssumeRoleWithWebIdentityResult>
        </AssumeRoleWithWebIdentityResponse>
        """

    @Test func theTokenFileIsExchangedForRoleCredentialsWithAnUnsignedCall() async throws {
        let home = try TemporaryDirectory()
        let tokenFile = try home.write("token", "eyJ.token-one.sig\n")
        let sts = FakeTransport(xml: Self.stsAnswer)
        let environment = [
            "AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile, "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/onetouch",
            "AWS_ROLE_SESSION_NAME": "ot", "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:5999", "HOME": home.path,
        ]
        let credentials = try await WebIdentityCredentialsProvider(environment: environment, transport: sts).credentials()
        #expect(credentials.accessKeyId == "ASIAWEBID")
        #expect(credentials.sessionToken == "websession")
        #expect(credentials.expiration != nil)
        let request = try #require(sts.requests.first)
        #expect(request.url.absoluteString == "http://127.0.0.1:5999")
        #expect(request.header("Authorization") == nil)
        #expect(
            request.bodyText
                == "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fonetouch"
                + "&RoleSessionName=ot&WebIdentityToken=eyJ.token-one.sig")
    }

    @Test func aProfileNamesTheTokenFileAndTheRoleAndTheRegionPicksTheEndpoint() async throws {
        let home = try TemporaryDirectory()
        let tokenFile = try home.write("token", "tok")
        let config = try home.write(
            "config", "[profile ci]\nweb_identity_token_file = \(tokenFile)\nrole_arn = arn:aws:iam::1:role/r\nregion = eu-west-1\n")
        let environment = ["AWS_PROFILE": "ci", "AWS_CONFIG_FILE": config, "AWS_SHARED_CREDENTIALS_FILE": home.path + "/none"]
        let settings = try WebIdentityCredentialsProvider(environment: environment, transport: FakeTransport(xml: "")).settings()
        #expect(settings.tokenFile == tokenFile)
        #expect(settings.roleARN == "arn:aws:iam::1:role/r")
        #expect(settings.endpoint.absoluteString == "https://sts.eu-west-1.amazonaws.com/")
        #expect(settings.sessionName.hasPrefix("onetouch-"))
        // The shared-file provider leaves such a profile to this one instead of stopping the chain.
        let sts = FakeTransport(xml: Self.stsAnswer)
        let chain = AWSCredentialsChain.standard(environment: environment, transport: sts, region: "us-west-2")
        #expect(try await chain.credentials().accessKeyId == "ASIAWEBID")
        #expect(sts.requests.first?.url.absoluteString == "https://sts.us-west-2.amazonaws.com/", "the provider's region wins")
    }

    @Test func aRotatedTokenIsReadAgainWhenAWSRefusesTheRoleCredentials() async throws {
        let home = try TemporaryDirectory()
        let tokenFile = try home.write("token", "token-one")
        let sts = FakeTransport(xml: Self.stsAnswer)
        let chain = AWSCredentialsChain.standard(
            environment: [
                "AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile, "AWS_ROLE_ARN": "arn:aws:iam::1:role/r", "HOME": home.path,
                "AWS_EC2_METADATA_DISABLED": "true",
            ], transport: sts)
        let first = try await chain.credentials()
        _ = try home.write("token", "token-two")
        await chain.invalidate(first)
        _ = try await chain.credentials()
        #expect(sts.requests.map { $0.bodyText.hasSuffix("WebIdentityToken=token-two") } == [false, true])
    }

    @Test func stsRefusalsSayWhatSTSSaid() async throws {
        let home = try TemporaryDirectory()
        let tokenFile = try home.write("token", "expired-token")
        let sts = FakeTransport(
            status: 400,
            xml:
                "<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredTokenException</Code><Message>Token expired: current date/time 1 must be before the expiration date/time 0</Message></Error></ErrorResponse>"
        )
        let provider = WebIdentityCredentialsProvider(
            environment: ["AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile, "AWS_ROLE_ARN": "arn:aws:iam::1:role/r", "HOME": home.path],
            transport: sts)
        await #expect {
            _ = try await provider.credentials()
        } throws: { error in
            guard case AWSCredentialsError.invalid(_, let reason) = error else { return false }
            return reason.contains("ExpiredTokenException") && reason.contains("Token expired")
        }
    }
}

@Suite("EC2 answers about expiry, throttling and detaching")
struct EC2AnswerClassTests {
    @Test(arguments: [
        ("RequestExpired", 400), ("ExpiredToken", 400), ("ExpiredTokenException", 403), ("InvalidClientTokenId", 403),
        ("UnrecognizedClientException", 400), ("SignatureDoesNotMatch", 403), ("RequestTimeTooSkewed", 403), ("AuthFailure", 401),
    ])
    func expiredRefusedOrSkewedCredentialsPauseWithARecheck(code: String, status: Int) {
        let step = EC2Error(code: code, message: "m", httpStatus: status).stepError
        #expect(step.errorClass == .needsHuman, "\(code)")
        #expect(step.retryAfter == .seconds(60), "\(code)")
        #expect(!step.throttled)
    }

    @Test(arguments: [("RequestLimitExceeded", 503), ("SlowDown", 503), ("HTTP429", 429), ("TooManyRequestsException", 400)])
    func throttlingIsTransientAndMarkedThrottled(code: String, status: Int) {
        let step = EC2Error(code: code, message: "m", httpStatus: status).stepError
        #expect(step.errorClass == .transient && step.throttled, "\(code)")
    }

    @Test func serverErrorsAreTransientButNotThrottling() {
        let step = EC2Error(code: "InternalError", message: "m", httpStatus: 500).stepError
        #expect(step.errorClass == .transient && !step.throttled)
    }

    @Test(arguments: [("Retry-After", "7", Duration.seconds(7)), ("x-amz-retry-after", "1500", Duration.milliseconds(1500))])
    func theWaitTheServiceAsksForReachesTheEngine(header: String, value: String, expected: Duration) async throws {
        let transport = FakeTransport { _ in
            HTTPResponseData(
                status: 503, headers: [(header, value)],
                body: Data(EC2XMLSamples.ec2Error("RequestLimitExceeded", "Request limit exceeded.").utf8))
        }
        await #expect {
            _ = try await EC2ClientTests.client(transport).describeInstances()
        } throws: { error in
            guard let error = error as? EC2Error else { return false }
            return error.retryAfter == expected && error.stepError.retryAfter == expected && error.stepError.throttled
        }
    }

    @Test func volumeInUseWhileDeletingIsTransient() async throws {
        let transport = FakeTransport(status: 400, xml: EC2XMLSamples.ec2Error("VolumeInUse", "Volume vol-1 is currently attached to i-1"))
        let provider = EC2CloudProvider(client: try EC2ClientTests.client(transport), settings: EC2LaunchSettings(imageID: "ami-1"))
        await #expect {
            try await provider.deleteVolume(volumeID: "vol-1")
        } throws: { error in
            StepError.classify(error).errorClass == .transient
        }
    }

    @Test func aDetachingVolumeIsStillAttached() async throws {
        let xml = EC2XMLSamples.describeVolumes.replacingOccurrences(of: "<status>attached</status>", with: "<status>detaching</status>")
            .replacingOccurrences(of: "<nextToken>vol-page-2</nextToken>", with: "")
        let provider = EC2CloudProvider(
            client: try EC2ClientTests.client(FakeTransport(xml: xml)), settings: EC2LaunchSettings(imageID: "ami-1"))
        let volumes = try await provider.volumes(ids: ["vol-0data"])
        #expect(volumes.first { $0.id == "vol-0data" }?.attachedTo == "i-1")
    }
}
