import Foundation
import OneTouchCore
import Testing

@testable import OneTouchEC2

@Suite("SigV4 signer")
struct SigV4Tests {
    @Test func signingKeyMatchesTheDocumentedDerivation() {
        let key = SigV4Signer.signingKey(
            secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", dateStamp: "20120215", region: "us-east-1",
            service: "iam")
        let hex = key.withUnsafeBytes { SigV4Signer.hex($0) }
        #expect(hex == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d")
    }

    @Test func vanillaGetProducesTheSuiteSignature() {
        let signer = SigV4Signer(region: "us-east-1", service: "service")
        let output = signer.sign(
            .init(method: "GET", path: "/", headers: [("Host", "example.amazonaws.com")]), credentials: exampleCredentials,
            date: suiteDate)
        #expect(
            output.canonicalRequest
                == "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
        #expect(
            output.authorization
                == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        )
    }

    /// botocore's variant of post-x-www-form-urlencoded: no body-hash header, which is how EC2
    /// Query requests are signed.
    @Test func formPostWithoutBodyHashHeaderMatchesBotocoreSuite() {
        let signer = SigV4Signer(region: "us-east-1", service: "service")
        let output = signer.sign(
            .init(
                method: "POST", path: "/",
                headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Host", "example.amazonaws.com")],
                body: Data("Param1=value1".utf8)),
            credentials: exampleCredentials, date: suiteDate)
        #expect(output.signedHeaders == "content-type;host;x-amz-date")
        #expect(output.canonicalRequest.hasSuffix("9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"))
        #expect(output.signature == "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")
    }

    @Test func sessionTokenIsSentAndSigned() {
        let credentials = AWSCredentials(
            accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            sessionToken: "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267")
        let output = SigV4Signer(region: "us-east-1", service: "service").sign(
            .init(method: "GET", path: "/", headers: [("Host", "example.amazonaws.com")]), credentials: credentials,
            date: suiteDate)
        #expect(output.signedHeaders == "host;x-amz-date;x-amz-security-token")
        #expect(output.signature == "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8")
        #expect(output.headers.contains { $0.0 == "X-Amz-Security-Token" && $0.1 == credentials.sessionToken })
    }

    @Test func ec2PostSignsContentTypeHostAndDateWithPortInHost() throws {
        let url = try #require(URL(string: "http://127.0.0.1:5055/"))
        let request = HTTPRequestData(
            method: "POST", url: url, headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
            body: Data("Action=DescribeInstances&Version=2016-11-15".utf8))
        let signed = SigV4Signer(region: "us-east-1", service: "ec2").sign(request, credentials: exampleCredentials, date: suiteDate)
        #expect(signed.header("host") == "127.0.0.1:5055")
        #expect(signed.header("x-amz-date") == "20150830T123600Z")
        let authorization = try #require(signed.header("authorization"))
        #expect(authorization.hasPrefix("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ec2/aws4_request, "))
        #expect(authorization.contains("SignedHeaders=content-type;host;x-amz-date, "))
    }

    @Test func defaultPortIsLeftOutOfHostHeader() throws {
        let url = try #require(URL(string: "https://ec2.eu-west-1.amazonaws.com:443/"))
        #expect(SigV4Signer.hostHeader(for: url) == "ec2.eu-west-1.amazonaws.com")
    }

    @Test func resigningReplacesTheOldSignatureAndIgnoresUserAgent() throws {
        let url = try #require(URL(string: "https://ec2.us-east-1.amazonaws.com/"))
        let signer = SigV4Signer(region: "us-east-1", service: "ec2")
        let first = signer.sign(
            HTTPRequestData(method: "POST", url: url, headers: [("User-Agent", "x")]), credentials: exampleCredentials,
            date: suiteDate)
        let second = signer.sign(first, credentials: exampleCredentials, date: suiteDate.addingTimeInterval(60))
        #expect(second.headers.filter { $0.0.lowercased() == "authorization" }.count == 1)
        #expect(second.headers.filter { $0.0.lowercased() == "x-amz-date" }.count == 1)
        #expect(second.header("authorization")?.contains("SignedHeaders=host;x-amz-date,") == true)
    }

    @Test func pathNormalizationRemovesDotAndEmptySegments() {
        #expect(SigV4Signer.normalize("//example//") == "/example/")
        #expect(SigV4Signer.normalize("/example1/example2/../..") == "/")
        #expect(SigV4Signer.normalize("/./example") == "/example")
        #expect(SigV4Signer.normalize("") == "/")
    }
}
