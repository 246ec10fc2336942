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
