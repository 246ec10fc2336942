import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import OneTouchCore
import OneTouchServer
import OneTouchTesting
import Testing

@Suite("Status page: signed in with an admin token, read-only, what a host sent shown as text")
struct StatusPageTests: APITest {
    @Test func theLivePartShowsTheFleetTheTimelineAndAFailureWithItsCommandEscaped() async throws {
        try await withServer { bed, client in
            try await bed.create("web-01")
            bed.silentHosts.insert("web-02")
            let failing = try await bed.create("web-02")
            for _ in 0..<10 { await bed.engine.runUntilIdle() }
            let token = try bed.tokenFor(failing)
            _ = try await bed.service.report(hostID: failing.id, token: token.reveal(), .init(stage: .booted))
            for _ in 0..<10 { await bed.engine.runUntilIdle() }
            #expect(try bed.host("web-02").step == .configPull)
            _ = try await bed.service.report(
                hostID: failing.id, token: token.reveal(),
                .init(stage: .failed, exitStatus: 1, logTail: "<script>alert(1)</script> \u{1b}[31mkinit failed", failedStage: .enrollment))
            try await bed.settle()
            #expect(try bed.host("web-02").hostState.kind == .failed)

            let html = try StatusPage.live(store: bed.store, now: Date())
            #expect(html.contains(#"data-state="ready""#) && html.contains(#"data-host="web-01""#))
            #expect(html.contains("provision <b>"), "the timeline shows each step with its duration")
            #expect(html.contains(#"<article class="failure" data-host="web-02">"#))
            #expect(html.contains("To fix: <code>onetouch retry web-02 --from preregister</code>"), "\(html)")
            #expect(!html.contains("<script>alert"), "a host's text is never markup")
            #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
            #expect(!html.contains("\u{1b}"), "escape sequences are made visible")
            _ = client
        }
    }

    @Test func aReadyHostWhoseConfigurationRunsFailNeedsAPersonAndShowsItsDrift() async throws {
        try await withServer { bed, _ in
            let drift = bed.drift()
            var credentials: [String: Secret] = [:]
            for name in ["web-01", "web-02"] {
                let host = try await bed.create(name)
                credentials[name] = try await drift.issueCredential(hostID: host.id, token: try bed.tokenFor(host).reveal())
            }
            try await bed.settle()
            _ = try await drift.report(hostID: try bed.host("web-01").id, credential: credentials["web-01"]!.reveal(), .init(exitStatus: 0))
            _ = try await drift.report(hostID: try bed.host("web-02").id, credential: credentials["web-02"]!.reveal(), .init(exitStatus: 2))
            let html = try StatusPage.live(store: bed.store, now: Date())
            #expect(html.contains(#"<article class="failure" data-host="web-02">"#))
            #expect(html.contains("ready · failing") && html.contains("its configuration runs fail"))
            #expect(html.contains("To fix: <code>onetouch drift</code>"))
            #expect(!html.contains(#"<article class="failure" data-host="web-01">"#))
            #expect(html.contains(#"<span class="badge drift-in-sync">in-sync</span>"#))
        }
    }

    @Test func thePageAsksForAnAdminTokenAndKeepsTheSessionInAnHttpOnlyCookie() async throws {
        try await withServer { bed, client in
            try await bed.create("web-01")
            try await client.execute(uri: "/status", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains(#"<form method="post" action="/status/sign-in">"#))
                #expect(response.headers[.contentSecurityPolicy]?.contains("script-src 'self'") == true)
            }
            try await client.execute(uri: "/status/live", method: .get) { #expect($0.status == .unauthorized) }
            let form: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
            try await client.execute(uri: "/status/sign-in", method: .post, headers: form, body: ByteBuffer(string: "token=wrong-token")) {
                #expect($0.status == .unauthorized)
                #expect(String(buffer: $0.body).contains("That is not one of serve&#39;s admin tokens."))
                #expect($0.headers[.setCookie] == nil)
            }
            var cookie = ""
            try await client.execute(
                uri: "/status/sign-in", method: .post, headers: form, body: ByteBuffer(string: "token=\(Self.adminToken)")
            ) { response in
                #expect(response.status == .seeOther && response.headers[.location] == "/status")
                let set = response.headers[.setCookie] ?? ""
                #expect(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/status"))
                #expect(!set.contains(Self.adminToken), "the cookie is a session id, not the token")
                cookie = String(set.split(separator: ";")[0])
            }
            try await client.execute(uri: "/status", method: .get, headers: [.cookie: cookie]) { response in
                let page = String(buffer: response.body)
                #expect(page.contains("signed in as <strong>ops</strong>") && page.contains(#"data-host="web-01""#))
                #expect(page.contains(#"<script src="/status/status.js" defer></script>"#))
            }
            try await client.execute(uri: "/status/live", method: .get, headers: [.cookie: cookie]) { #expect($0.status == .ok) }
            try await client.execute(uri: "/status/status.js", method: .get) { response in
                #expect(String(buffer: response.body).contains(#"fetch("/status/live""#))
            }
            try await client.execute(uri: "/status/sign-out", method: .get, headers: [.cookie: cookie]) { #expect($0.status == .seeOther) }
            try await client.execute(uri: "/status/live", method: .get, headers: [.cookie: cookie]) {
                #expect($0.status == .unauthorized, "signed out")
            }
        }
    }
}
