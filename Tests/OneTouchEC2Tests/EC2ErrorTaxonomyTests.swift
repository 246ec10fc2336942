import Foundation
import OneTouchCore
import OneTouchEC2
import Testing

@Suite("EC2 errors in the engine's taxonomy")
struct EC2ErrorTaxonomyTests {
    static let cases: [(code: String, status: Int, expected: ErrorClass)] = [
        ("RequestLimitExceeded", 503, .transient),
        ("InternalError", 500, .transient),
        ("InvalidInstanceID.NotFound", 400, .transient),  // not visible yet, right after a create
        ("IdempotentParameterMismatch", 400, .permanent),
        ("IdempotentInstanceTerminated", 400, .permanent),
        ("InvalidSubnetID.NotFound", 400, .permanent),
        ("InvalidAMIID.NotFound", 400, .permanent),
        ("AuthFailure", 401, .needsHuman),
        ("UnauthorizedOperation", 403, .needsHuman),
    ]

    @Test(arguments: cases.indices)
    func eachEC2ErrorHasTheRightClassAndKeepsTheAWSMessage(index: Int) {
        let (code, status, expected) = Self.cases[index]
        let error = EC2Error(code: code, message: "the AWS words for \(code)", httpStatus: status, action: "RunInstances")
        let stepError = error.stepError
        #expect(stepError.errorClass == expected, "\(code)")
        #expect(stepError.message.contains(code) && stepError.message.contains("the AWS words"))
    }

    @Test func rejectedCredentialsAreRecheckedEveryMinute() {
        let error = EC2Error(code: "AuthFailure", message: "AWS was not able to validate the provided access credentials", httpStatus: 401)
        #expect(error.stepError.retryAfter == .seconds(60))
        #expect(error.stepError.hint?.contains("continues by itself") == true)
    }
}

@Suite("EC2 provider answers the engine acts on")
struct EC2ProviderAnswerTests {
    @Test func aClientTokenWhoseInstanceIsTerminatedIsASpentLaunchKeyNotAFailure() async throws {
        let transport = FakeTransport(
            status: 400,
            xml: EC2XMLSamples.ec2Error(
                "IdempotentInstanceTerminated",
                "The client token you have provided is associated with a terminated instance. Please use a different client token."))
        let provider = EC2CloudProvider(client: try EC2ClientTests.client(transport), settings: EC2LaunchSettings(imageID: "ami-1"))
        let request = LaunchRequest(
            hostID: "h1", hostName: "web-01.example.test", role: "web", instanceType: "t3.small", userData: Data("#cloud-config\n".utf8),
            idempotencyKey: "h1-provision-g1", tags: [:])
        await #expect {
            _ = try await provider.launch(request)
        } throws: { error in
            guard let spent = error as? LaunchKeySpent else { return false }
            return spent.description.contains("IdempotentInstanceTerminated")
        }
        #expect(transport.requests.count == 1)
    }
}
