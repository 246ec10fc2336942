import Foundation
import OneTouchCore
import Testing

@testable import OneTouchSlack

/// Slack's v0 request signing, against the known-answer vector of Slack's own SDK tests.
struct SlackSignatureTests {
    static let secret = Secret("8f742231b10e8888abcd99yyyzzz85a5")
    static let timestamp = "1531420618"
    static let body = Data(
        "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
            .utf8)
    static let expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    static let then = Date(timeIntervalSince1970: 1_531_420_618)

    @Test func computesTheSignatureOfSlacksKnownAnswerVector() {
        #expect(SlackSignature.compute(secret: Self.secret, timestamp: Self.timestamp, body: Self.body) == Self.expected)
    }

    @Test func acceptsTheVectorAtItsTime() throws {
        try SlackSignature.verify(
            secret: Self.secret, timestamp: Self.timestamp, signature: Self.expected, body: Self.body, now: Self.then,
            maxAge: .seconds(300))
    }

    @Test func refusesABodyChangedByOneCharacter() {
        var body = Self.body
        body.append(contentsOf: Array("------".utf8))
        #expect(throws: SlackSignature.Refusal.badSignature) {
            try SlackSignature.verify(
                secret: Self.secret, timestamp: Self.timestamp, signature: Self.expected, body: body, now: Self.then,
                maxAge: .seconds(300))
        }
    }

    @Test func refusesAnotherSecret() {
        #expect(throws: SlackSignature.Refusal.badSignature) {
            try SlackSignature.verify(
                secret: Secret("another-signing-secret-0000"), timestamp: Self.timestamp, signature: Self.expected, body: Self.body,
                now: Self.then, maxAge: .seconds(300))
        }
    }

    @Test func refusesATimestampMoreThanFiveMinutesOldOrAhead() {
        for offset in [301.0, -301.0] {
            #expect(throws: SlackSignature.Refusal.self) {
                try SlackSignature.verify(
                    secret: Self.secret, timestamp: Self.timestamp, signature: Self.expected, body: Self.body,
                    now: Self.then.addingTimeInterval(offset), maxAge: .seconds(300))
            }
        }
        // Four minutes and 59 seconds later is still in the window.
        #expect(throws: Never.self) {
            try SlackSignature.verify(
                secret: Self.secret, timestamp: Self.timestamp, signature: Self.expected, body: Self.body,
                now: Self.then.addingTimeInterval(299), maxAge: .seconds(300))
        }
    }

    @Test func refusesARequestWithoutHeaders() {
        #expect(throws: SlackSignature.Refusal.missingHeaders) {
            try SlackSignature.verify(
                secret: Self.secret, timestamp: nil, signature: Self.expected, body: Self.body, now: Self.then, maxAge: .seconds(300))
        }
        #expect(throws: SlackSignature.Refusal.missingHeaders) {
            try SlackSignature.verify(
                secret: Self.secret, timestamp: Self.timestamp, signature: nil, body: Self.body, now: Self.then, maxAge: .seconds(300))
        }
    }
}
