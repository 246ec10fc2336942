import Foundation
import OneTouchCore
import Testing

@testable import OneTouchCLI

@Suite("Admin tokens have names")
struct AdminTokenNamesTests {
    @Test func aLineIsATokenOrANameAndAToken() throws {
        let entries = try AdminTokens.parse(
            "# the ops team\nalice 0123456789abcdef0123\n\n  ci-bot\tfedcba9876543210fedc  \n0000111122223333444\n", source: "admin-token")
        #expect(entries.map(\.name).prefix(2) == ["alice", "ci-bot"])
        #expect(entries.map { $0.token.reveal() } == ["0123456789abcdef0123", "fedcba9876543210fedc", "0000111122223333444"])
        // Unnamed: a short fingerprint of the token's hash, the same on every start, never the token.
        let unnamed = entries[2].name
        #expect(unnamed.hasPrefix("token-") && unnamed.count == 14)
        #expect(!unnamed.contains("0000111122223333444"))
        #expect(try AdminTokens.parse("0000111122223333444", source: "x")[0].name == unnamed)
    }

    @Test(arguments: [
        ("alice aaaaaaaaaaaaaaaa\nalice bbbbbbbbbbbbbbbb", "line 2 of admin-token: the name alice is used twice"),
        ("al!ce aaaaaaaaaaaaaaaa", "line 1 of admin-token: a token's name is letters, digits and .-_@"),
        ("alice aaaaaaaaaaaaaaaa extra", "line 1 of admin-token: write a token, or a name and a token"),
    ])
    func aMalformedLineIsRefusedNamingTheLine(text: String, message: String) {
        do {
            _ = try AdminTokens.parse(text, source: "admin-token")
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.description.contains(message), "\(error.description)")
            #expect(!error.description.contains("aaaaaaaaaaaaaaaa"), "a token never appears in the message")
        }
    }
}
