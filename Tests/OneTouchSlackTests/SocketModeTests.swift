import Foundation
import OneTouchCore
import Testing

@testable import OneTouchSlack

/// What each Socket Mode message calls for, without a network: the end-to-end test drives a real
/// WebSocket through the test server.
@Suite(.serialized)
struct SocketModeTests {
    final class Rig: @unchecked Sendable {
        let harness: SlackHarness
        let socket: SlackSocketMode

        init() throws {
            harness = try SlackHarness()
            var settings = SlackHarness.settings()
            settings.chatOps = ChatOpsSettings(
                signingSecret: nil, allow: [.create: ["U0ADMIN001"], .list: ["*"]], appToken: Secret("xapp-1-test"))
            let chatOps = try SlackChatOps(
                settings: settings, service: harness.bed.service, transport: harness.slack, databasePath: harness.bed.databasePath,
                logger: harness.logs.logger(label: "chatops"))
            socket = SlackSocketMode(
                chatOps: chatOps, appToken: Secret("xapp-1-test"), transport: harness.slack, apiURL: settings.apiURL,
                logger: harness.logs.logger(label: "socket"))
        }

        func envelope(_ id: String, _ text: String, user: String = "U0ADMIN001") -> String {
            ([
                "envelope_id": .string(id), "type": "slash_commands", "accepts_response_payload": true,
                "payload": ["user_id": .string(user), "text": .string(text), "command": "/onetouch"],
            ] as JSONValue).text
        }
    }

    @Test func aSlashCommandIsAnsweredInItsAckAndActedOnOnceWhenSlackSendsItAgain() async throws {
        let rig = try Rig()
        let message = rig.envelope("env-1", "create web-01 role=web")
        guard case .ack(let first) = await rig.socket.handle(message) else {
            Issue.record("expected an ack")
            return
        }
        let ack = try #require(JSONValue.parse(Data(first.utf8)))
        #expect(ack["envelope_id"]?.string == "env-1")
        #expect(ack["payload"]?["text"]?.string?.hasPrefix("web-01 is created") == true)
        guard case .ack(let again) = await rig.socket.handle(message) else {
            Issue.record("expected an ack")
            return
        }
        #expect(again == #"{"envelope_id":"env-1"}"#, "acked, not answered nor acted on again")
        #expect(try rig.harness.bed.store.hosts().count == 1)
        #expect(try rig.harness.bed.store.events(hostID: try rig.harness.bed.host("web-01").id).first?.actor == "slack:U0ADMIN001")
    }

    @Test func whoMayDoWhatHoldsOverSocketModeToo() async throws {
        let rig = try Rig()
        guard case .ack(let answer) = await rig.socket.handle(rig.envelope("env-2", "create web-02 role=web", user: "U0STRANGER")) else {
            Issue.record("expected an ack")
            return
        }
        #expect(answer.contains("may not create hosts"))
        #expect(try rig.harness.bed.store.hosts().isEmpty)
    }

    @Test func aClickIsAckedFirstHelloIsQuietAndDisconnectReconnects() async throws {
        let rig = try Rig()
        let click = (["envelope_id": "env-3", "type": "interactive", "payload": ["type": "block_actions", "actions": []]] as JSONValue).text
        guard case .ackThen(let ack, _) = await rig.socket.handle(click) else {
            Issue.record("expected an ack, then the work")
            return
        }
        #expect(ack == #"{"envelope_id":"env-3"}"#)
        guard case .ignore = await rig.socket.handle(#"{"type":"hello","num_connections":1}"#) else {
            Issue.record("hello needs no answer")
            return
        }
        guard case .reconnect(let reason) = await rig.socket.handle(#"{"type":"disconnect","reason":"refresh_requested"}"#) else {
            Issue.record("disconnect opens a new connection")
            return
        }
        #expect(reason == "refresh_requested")
    }

    @Test func theConnectionURLComesFromTheAppTokenNeverTheBotToken() async throws {
        let rig = try Rig()
        await #expect(throws: (any Error).self) { try await rig.socket.openConnection() }
        #expect(rig.harness.slack.requests("apps.connections.open").count == 1)
    }
}
