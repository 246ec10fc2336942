import Crypto
import Foundation
import OneTouchCore

/// Slack's request signing, version 0: `v0=` + hex(HMAC-SHA256(signing secret, "v0:" + timestamp +
/// ":" + raw body)), sent as `X-Slack-Signature` with `X-Slack-Request-Timestamp`.
public enum SlackSignature {
    public static func compute(secret: Secret, timestamp: String, body: Data) -> String {
        var message = Data("v0:\(timestamp):".utf8)
        message.append(body)
        let code = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Data(secret.reveal().utf8)))
        return "v0=" + code.map { String(format: "%02x", $0) }.joined()
    }

    /// Why a request was refused. Said to the caller in general terms only.
    public enum Refusal: Error, Equatable, CustomStringConvertible {
        case missingHeaders
        case stale(seconds: Int)
        case badSignature
        case replayed

        public var description: String {
            switch self {
            case .missingHeaders: "no X-Slack-Request-Timestamp or X-Slack-Signature"
            case .stale(let seconds): "signed \(seconds) s away from now (more than 5 minutes)"
            case .badSignature: "the signature does not match"
            case .replayed: "this request was already received"
            }
        }
    }

    /// Checks a request's signature and age (either direction). The comparison takes the same time
    /// wherever the first difference is.
    public static func verify(
        secret: Secret, timestamp: String?, signature: String?, body: Data, now: Date, maxAge: Duration
    ) throws(Refusal) {
        guard let timestamp, let signature, let seconds = Int(timestamp) else { throw .missingHeaders }
        let skew = Int(now.timeIntervalSince1970) - seconds
        guard abs(skew) <= Int(maxAge.seconds) else { throw .stale(seconds: skew) }
        let expected = compute(secret: secret, timestamp: timestamp, body: body)
        guard constantTimeEqual(Array(expected.utf8), Array(signature.utf8)) else { throw .badSignature }
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}
