import Foundation
import Hummingbird
import OneTouchCore
import Synchronization

/// Browser sessions of the status page: the admin token is given once, in a form, and the browser
/// then holds a random session id in an HttpOnly, SameSite=Strict cookie scoped to `/status`. Sessions
/// live in memory (a restart of `serve` signs everyone out) and end after 8 hours.
final class StatusSessions: Sendable {
    static let lifetime: TimeInterval = 8 * 3600
    static let cookie = "onetouch_status"
    private let sessions = Mutex<[String: (name: String, expires: Date)]>([:])

    func open(name: String, now: Date) -> String {
        var generator = SystemRandomNumberGenerator()
        let id = (0..<4).map { _ in String(format: "%016llx", generator.next() as UInt64) }.joined()
        sessions.withLock {
            $0 = $0.filter { $0.value.expires > now }
            $0[id] = (name, now.addingTimeInterval(Self.lifetime))
        }
        return id
    }

    func name(_ request: Request, now: Date) -> String? {
        guard let id = Self.cookieValue(request) else { return nil }
        return sessions.withLock { $0[id].flatMap { $0.expires > now ? $0.name : nil } }
    }

    func close(_ request: Request) {
        guard let id = Self.cookieValue(request) else { return }
        _ = sessions.withLock { $0.removeValue(forKey: id) }
    }

    static func cookieValue(_ request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let parts = pair.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
                if parts.count == 2, parts[0] == cookie { return String(parts[1]) }
            }
        }
        return nil
    }
}

extension OneTouchServer {
    /// Every page answer: no caching, no framing, no referrer, scripts and styles from this server only.
    static let pageHeaders: HTTPFields = [
        .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
        .contentSecurityPolicy:
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        HTTPFields.Element.Name("X-Content-Type-Options")!: "nosniff", HTTPFields.Element.Name("Referrer-Policy")!: "no-referrer",
    ]

    static func page(_ status: HTTPResponse.Status, _ html: String, headers extra: HTTPFields = [:]) -> Response {
        var headers = pageHeaders
        headers.append(contentsOf: extra)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    /// The live status page (read-only): `/status` (the page, or the sign-in form), `/status/live` (the
    /// part the page's script fetches again every 2 s), `/status/sign-in`, `/status/sign-out` and the
    /// page's script and style sheet. `secureCookies`: the listener speaks TLS.
    static func addStatusRoutes(
        to router: Router<BasicRequestContext>, store: Store, adminTokens: [AdminToken], secureCookies: Bool
    ) {
        let sessions = StatusSessions()
        router.get("/status") { request, _ in
            guard let name = sessions.name(request, now: Date()) else { return page(.ok, try StatusPage.signIn(problem: nil)) }
            return page(.ok, try StatusPage.page(live: try StatusPage.live(store: store, now: Date()), signedInAs: name))
        }
        router.get("/status/live") { request, _ in
            guard sessions.name(request, now: Date()) != nil else { return page(.unauthorized, "") }
            return page(.ok, try StatusPage.live(store: store, now: Date()))
        }
        router.post("/status/sign-in") { request, _ in
            let body = try await request.body.collect(upTo: 4096)
            let form = String(buffer: body).split(separator: "&").compactMap { pair -> (String, String)? in
                let parts = pair.split(separator: "=", maxSplits: 1).map {
                    String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
                }
                return parts.count == 2 ? (parts[0], parts[1]) : nil
            }
            let token = form.first { $0.0 == "token" }?.1 ?? ""
            guard let name = AdminToken.name(of: token, in: adminTokens) else {
                return page(
                    .unauthorized,
                    try StatusPage.signIn(
                        problem:
                            "That is not one of serve's admin tokens. Use a line of the file that admin_tokens names in serve's configuration (the token, without its name)."
                    ))
            }
            let id = sessions.open(name: name, now: Date())
            let cookie =
                "\(StatusSessions.cookie)=\(id); Path=/status; HttpOnly; SameSite=Strict; Max-Age=\(Int(StatusSessions.lifetime))"
                + (secureCookies ? "; Secure" : "")
            return page(.seeOther, "", headers: [.location: "/status", .setCookie: cookie])
        }
        router.get("/status/sign-out") { request, _ in
            sessions.close(request)
            return page(.seeOther, "", headers: [.location: "/status", .setCookie: "\(StatusSessions.cookie)=; Path=/status; Max-Age=0"])
        }
        for (name, type) in [("status.js", "text/javascript; charset=utf-8"), ("status.css", "text/css; charset=utf-8")] {
            let text = StatusPage.asset(name) ?? ""
            router.get("/status/\(name)") { _, _ in
                let headers: HTTPFields = [
                    .contentType: type, .cacheControl: "no-cache", HTTPFields.Element.Name("X-Content-Type-Options")!: "nosniff",
                ]
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
            }
        }
    }
}
