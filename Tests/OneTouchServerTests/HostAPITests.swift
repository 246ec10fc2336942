import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import OneTouchCore
import OneTouchServer
import OneTouchTesting
import Testing

@Suite("HTTP API: admin auth, host tokens, limits, one-time enrollment")
struct HostAPITests: APITest {
    @Test func healthzAnswersWithoutAuth() async throws {
        try await withServer { _, client in
            try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
        }
    }

    @Test func adminAPIRefusesMissingAndWrongTokens() async throws {
        try await withServer { _, client in
            try await client.execute(uri: "/v1/admin/hosts", method: .get) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: "/v1/admin/hosts", method: .get, headers: [.authorization: "Bearer wrong-token-000000000"]) {
                #expect($0.status == .unauthorized)
            }
            try await client.execute(uri: "/v1/admin/hosts", method: .get, headers: admin()) { #expect($0.status == .ok) }
        }
    }

    @Test func adminActionsAreRecordedUnderTheNameOfTheTokenThatActedAndCannotBeSpoofed() async throws {
        try await withServer { bed, client in
            var headers = admin()
            headers[HTTPFields.Element.Name("x-onetouch-admin")!] = "someone-else"
            try await client.execute(
                uri: "/v1/admin/hosts", method: .post, headers: headers, body: json(#"{"name":"web-01","role":"web"}"#)
            ) { #expect($0.status == .created) }
            let host = try bed.host("web-01")
            let created = try #require(try bed.store.events(hostID: host.id).first)
            #expect(created.actor == "admin:ops")
        }
    }

    @Test func createValidatesBeforeAnythingHappens() async throws {
        try await withServer { bed, client in
            try await client.execute(
                uri: "/v1/admin/hosts", method: .post, headers: admin(), body: json(#"{"name":"Bad_Name","role":"web"}"#)
            ) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("use lower case only"))
            }
            try await client.execute(
                uri: "/v1/admin/hosts", method: .post, headers: admin(), body: json(#"{"name":"web-01","role":"nope"}"#)
            ) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("unknown role 'nope'; known roles: web"))
            }
            #expect(try bed.store.hosts().isEmpty)
            try await client.execute(
                uri: "/v1/admin/hosts", method: .post, headers: admin(), body: json(#"{"name":"web-01","role":"web"}"#)
            ) { #expect($0.status == .created) }
            try await client.execute(
                uri: "/v1/admin/hosts", method: .post, headers: admin(), body: json(#"{"name":"web-01","role":"web"}"#)
            ) { #expect($0.status == .conflict) }
        }
    }

    @Test func hostTokenWorksOnlyForItsOwnHost() async throws {
        try await withServer { bed, client in
            let a = try await bed.create("web-01")
            let b = try await bed.create("web-02")
            let tokenA = try bed.tokenFor(a)
            let report = json(#"{"stage":"booted"}"#)
            try await client.execute(uri: "/v1/hosts/\(a.id)/reports", method: .post, body: report) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: "/v1/hosts/\(b.id)/reports", method: .post, headers: bearer(tokenA), body: report) {
                #expect($0.status == .unauthorized)
            }
            try await client.execute(
                uri: "/v1/hosts/\(a.id)/reports", method: .post, headers: [.authorization: "Bearer x\(tokenA.reveal())"], body: report
            ) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: "/v1/hosts/\(a.id)/reports", method: .post, headers: bearer(tokenA), body: report) {
                #expect($0.status == .ok)
                #expect(String(buffer: $0.body).contains(#""recorded":true"#))
            }
        }
    }

    @Test func oversizedAndMalformedReportsAreRefused() async throws {
        try await withServer { bed, client in
            let host = try await bed.create("web-01")
            let token = try bed.tokenFor(host)
            let huge = String(repeating: "x", count: OneTouchServer.maxBodyBytes + 1)
            try await client.execute(
                uri: "/v1/hosts/\(host.id)/reports", method: .post, headers: bearer(token),
                body: json(#"{"stage":"failed","logTail":"\#(huge)"}"#)
            ) { #expect($0.status == .contentTooLarge) }
            let tail = String(repeating: "y", count: 70 * 1024)
            try await client.execute(
                uri: "/v1/hosts/\(host.id)/reports", method: .post, headers: bearer(token),
                body: json(#"{"stage":"failed","logTail":"\#(tail)"}"#)
            ) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("at most the last 65536"))
            }
            try await client.execute(
                uri: "/v1/hosts/\(host.id)/reports", method: .post, headers: bearer(token), body: json(#"{"stage":"exploded"}"#)
            ) { #expect($0.status == .badRequest) }
        }
    }

    @Test func statusOfAHostThatReportedAFailureShowsItsLogTail() async throws {
        try await withServer { bed, client in
            bed.silentHosts = ["web-01"]
            let host = try await bed.create("web-01")
            for _ in 0..<10 { await bed.engine.runUntilIdle() }
            #expect(try bed.host("web-01").hostState == .waiting(.bootstrap))
            try await client.execute(
                uri: "/v1/hosts/\(host.id)/reports", method: .post, headers: bearer(try bed.tokenFor(host)),
                body: json(#"{"stage":"failed","exitStatus":2,"logTail":"line 1\nE: Unable to locate package nginx-full"}"#)
            ) { #expect($0.status == .ok) }
            await bed.engine.runUntilIdle()
            #expect(try bed.host("web-01").hostState.kind == .failed)
            try await client.execute(uri: "/v1/admin/hosts/web-01", method: .get, headers: admin()) { response in
                let view = try APIDates.decoder().decode(HostView.self, from: Data(buffer: response.body))
                #expect(view.failureLog == "line 1\nE: Unable to locate package nginx-full")
            }
            // The list stays light: no logs there.
            try await client.execute(uri: "/v1/admin/hosts", method: .get, headers: admin()) { response in
                #expect(!String(buffer: response.body).contains("failureLog"))
            }
        }
    }

    @Test func aSecondMachineWithTheTokenGetsNothingAndPausesTheHost() async throws {
        try await withServer { bed, client in
            let created = try await bed.create("web-01")
            let token = try bed.tokenFor(created)
            for _ in 0..<10 { await bed.engine.runUntilIdle() }
            #expect(try bed.host("web-01").hostState == .waiting(.bootstrap))
            // The machine's first call binds the host to its boot secret.
            try await client.execute(uri: "/v1/hosts/\(created.id)/claim", method: .post, headers: bearer(token)) {
                #expect($0.status == .noContent)
            }
            try await client.execute(
                uri: "/v1/hosts/\(created.id)/reports", method: .post, headers: bearer(token), body: json(#"{"stage":"booted"}"#)
            ) { #expect($0.status == .ok) }
            // Someone who read the user-data asks for the one-time password with the same token.
            try await client.execute(
                uri: "/v1/hosts/\(created.id)/enrollment", method: .get, headers: bearer(token, claim: "another-machine-0123456789")
            ) { response in
                #expect(response.status == .forbidden)
                #expect(!String(buffer: response.body).contains("oneTimePassword"))
            }
            let paused = try bed.host("web-01").hostState
            guard case .paused(_, let reason) = paused else {
                Issue.record("expected paused, got \(paused)")
                return
            }
            #expect(reason.contains("two machines claim this host"))
            #expect(reason.contains("onetouch retry web-01 --from provision"))
            // The first machine is still itself; a call without a boot secret is refused outright.
            try await client.execute(uri: "/v1/hosts/\(created.id)/task", method: .get, headers: bearer(token)) {
                #expect($0.status == .ok)
            }
            try await client.execute(
                uri: "/v1/hosts/\(created.id)/task", method: .get,
                headers: [.authorization: "Bearer \(token.reveal())"]
            ) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("X-OneTouch-Claim"))
            }
            // A new generation is a new machine: it starts unclaimed.
            _ = try await bed.service.retry("web-01", from: .provision, actor: "test")
            let next = try bed.host("web-01")
            try await client.execute(
                uri: "/v1/hosts/\(created.id)/task", method: .get,
                headers: bearer(try bed.tokenFor(next), claim: "the-new-machine-0123456789")
            ) { #expect($0.status == .ok) }
        }
    }

    @Test func enrollmentIsTooEarlyThenServedUntilAcknowledgedThenGone() async throws {
        try await withServer { bed, client in
            let created = try await bed.create("web-01")
            let token = try bed.tokenFor(created)
            try await client.execute(uri: "/v1/hosts/\(created.id)/enrollment", method: .get, headers: bearer(token)) {
                #expect($0.status.code == 425)
            }
            // Drive the host until it waits for its boot report (pre-registration done).
            for _ in 0..<10 { await bed.engine.runUntilIdle() }
            #expect(try bed.host("web-01").hostState == .waiting(.bootstrap))
            var password = ""
            try await client.execute(uri: "/v1/hosts/\(created.id)/enrollment", method: .get, headers: bearer(token)) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.cacheControl] == "no-store")
                let body = try JSONDecoder().decode(EnrollmentBody.self, from: Data(buffer: response.body))
                password = body.oneTimePassword
                #expect(body.principal == "host/web-01.onetouch.test")
            }
            #expect(password.count == 32)
            // A lost answer can be fetched again until the host's next report acknowledges it.
            try await client.execute(uri: "/v1/hosts/\(created.id)/enrollment", method: .get, headers: bearer(token)) {
                #expect($0.status == .ok)
            }
            try await client.execute(
                uri: "/v1/hosts/\(created.id)/reports", method: .post, headers: bearer(token),
                body: json(#"{"stage":"volume-mounted"}"#)
            ) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/hosts/\(created.id)/enrollment", method: .get, headers: bearer(token)) {
                #expect($0.status == .gone)
            }
            // The password is nowhere in the database in plaintext.
            let raw =
                try Data(contentsOf: URL(fileURLWithPath: bed.databasePath))
                + ((try? Data(contentsOf: URL(fileURLWithPath: bed.databasePath + "-wal"))) ?? Data())
            #expect(raw.range(of: Data(password.utf8)) == nil)
            #expect(!bed.logs.all.contains { $0.contains(password) })
        }
    }

    @Test func aReportAfterReadyIsRefusedAndChangesNothing() async throws {
        try await withServer { bed, client in
            let created = try await bed.create("web-01")
            try await bed.settle()
            #expect(try bed.host("web-01").hostState == .ready)
            let eventsBefore = try bed.store.events(hostID: created.id).count
            try await client.execute(
                uri: "/v1/hosts/\(created.id)/reports", method: .post, headers: bearer(try bed.tokenFor(created)),
                body: json(#"{"stage":"failed","exitStatus":1,"logTail":"late"}"#)
            ) { response in
                #expect(response.status == .unauthorized, "the bootstrap token closed at ready")
            }
            await bed.engine.runUntilIdle()
            #expect(try bed.host("web-01").hostState == .ready)
            #expect(try bed.store.events(hostID: created.id).count == eventsBefore)
        }
    }

    @Test func aHostTokenIsRevokedAsSoonAsDestroyIsAskedFor() async throws {
        try await withServer { bed, client in
            let created = try await bed.create("web-01")
            try await bed.settle()
            _ = try await bed.service.destroy("web-01", keepVolume: false, actor: "test")
            // Still tearing down: the host API is closed to it already.
            #expect(try bed.host("web-01").hostState.kind == .destroying)
            for path in ["/v1/hosts/\(created.id)/enrollment", "/v1/hosts/\(created.id)/volume"] {
                try await client.execute(uri: path, method: .get, headers: bearer(try bed.tokenFor(created))) {
                    #expect($0.status == .unauthorized, "\(path)")
                }
            }
            try await bed.settle()
            #expect(try bed.host("web-01").hostState == .destroyed)
            try await client.execute(
                uri: "/v1/hosts/\(created.id)/reports", method: .post, headers: bearer(try bed.tokenFor(created)),
                body: json(#"{"stage":"booted"}"#)
            ) { #expect($0.status == .unauthorized) }
        }
    }
}
