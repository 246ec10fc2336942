import Foundation
import OneTouchEC2
import Testing

@Suite("EC2 error classification")
struct EC2ErrorTests {
    @Test(arguments: [
        ("RequestLimitExceeded", 503, EC2Error.Kind.throttled),
        ("EC2ThrottledException", 503, .throttled),
        ("RequestLimitExceeded", 400, .throttled),
        ("InternalError", 500, .transient),
        ("Unavailable", 503, .transient),
        ("RequestTimeout", 400, .transient),
        ("InsufficientInstanceCapacity", 500, .transient),
        ("SomethingNew", 502, .transient),
        ("InvalidInstanceID.NotFound", 400, .notFoundMaybeEventual),
        ("InvalidVolume.NotFound", 400, .notFoundMaybeEventual),
        ("IdempotentInstanceTerminated", 400, .idempotentInstanceTerminated),
        ("IdempotentParameterMismatch", 400, .idempotencyMismatch),
        ("AuthFailure", 401, .authentication),
        ("UnauthorizedOperation", 403, .authentication),
        ("InvalidClientTokenId", 400, .authentication),
        ("ExpiredToken", 400, .authentication),
        ("SignatureDoesNotMatch", 403, .authentication),
        ("InvalidParameterValue", 400, .invalidRequest),
        ("InvalidAMIID.NotFound", 400, .invalidRequest),
        ("InvalidAMIID.Malformed", 400, .invalidRequest),
        ("InvalidSubnetID.NotFound", 400, .invalidRequest),
        ("InvalidGroup.NotFound", 400, .invalidRequest),
        ("InvalidParameterCombination", 400, .invalidRequest),
        ("InvalidParameterDependency", 400, .invalidRequest),
        ("KMS.NotFoundException", 400, .invalidRequest),
        ("DryRunOperation", 412, .invalidRequest),
    ])
    func codeAndStatusMapToKind(code: String, status: Int, kind: EC2Error.Kind) {
        #expect(EC2Error(code: code, message: "m", httpStatus: status).kind == kind)
    }

    @Test func onlyThrottledAndTransientAreRetryable() {
        #expect(EC2Error.Kind.allCases.filter(\.isRetryable) == [.throttled, .transient])
    }

    @Test func messageCarriesActionCodeAndAWSMessage() {
        let error = EC2Error(
            code: "InvalidAMIID.NotFound", message: "The image id '[ami-1]' does not exist", httpStatus: 400,
            requestID: "req-9", action: "RunInstances")
        #expect(
            error.description
                == "EC2 RunInstances failed: InvalidAMIID.NotFound: The image id '[ami-1]' does not exist (HTTP 400, request ID req-9)")
    }

    @Test func authenticationMessageSaysWhatToCheck() {
        let error = EC2Error(code: "AuthFailure", message: "AWS was not able to validate the provided access credentials", httpStatus: 401)
        #expect(error.description.contains("AuthFailure: AWS was not able to validate the provided access credentials"))
        #expect(error.description.contains("check the AWS credentials"))
    }
}
