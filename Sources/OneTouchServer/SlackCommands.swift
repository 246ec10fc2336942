import Foundation
import Hummingbird
import Logging
import NIOCore
import OneTouchCore
import OneTouchSlack

/// Slack's side of `onetouch serve`: slash commands and button clicks (each verified against the
/// signing secret before anything is read), and a host's announcements for `onetouch status`.
extension OneTouchServer {
    public static func addSlackRoutes(
        to router: Router<BasicRequestContext>, announcer: SlackAnnouncer, chatOps: SlackChatOps?, service: HostService,
        adminTokens: [AdminToken], logger: Logger
    ) {
        let admin = router.group("/v1/admin").add(middleware: AdminAuth(tokens: adminTokens))
        admin.get("/hosts/:name/announcements") { _, context in
            let name = try context.parameters.require("name")
            let host = try await call { try service.host(named: name) }
            return try json(.ok, try announcer.announcements(hostID: host.id))
        }
        guard let chatOps else { return }

        router.post("/v1/slack/commands") { request, _ in
            let body = try await verifiedSlackBody(request, chatOps: chatOps, logger: logger)
            let fields = FormEncoding.decode(String(decoding: body, as: UTF8.self))
            if fields["ssl_check"] == "1" { return Response(status: .ok) }
            return try json(.ok, await chatOps.command(fields).json)
        }
        router.post("/v1/slack/interactions") { request, _ in
            let body = try await verifiedSlackBody(request, chatOps: chatOps, logger: logger)
            let fields = FormEncoding.decode(String(decoding: body, as: UTF8.self))
            guard let payload = fields["payload"].flatMap({ JSONValue.parse(Data($0.utf8)) }) else {
                throw APIError(.badRequest, "no payload")
            }
            if let reply = await chatOps.interaction(payload) {
                let responseURL = payload["response_url"]?.string
                Task { await chatOps.respond(reply, to: responseURL) }
            }
            return Response(status: .ok)
        }
    }

    /// The raw body of a request Slack signed; 401 for anything unsigned, forged, stale or replayed.
    static func verifiedSlackBody(_ request: Request, chatOps: SlackChatOps, logger: Logger) async throws -> Data {
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: maxBodyBytes) } catch {
            throw APIError(.contentTooLarge, "request body larger than \(maxBodyBytes) bytes")
        }
        let body = Data(buffer: buffer)
        do {
            try chatOps.verify(
                timestamp: header(request, "x-slack-request-timestamp"), signature: header(request, "x-slack-signature"), body: body)
        } catch {
            logger.warning("Slack request refused", metadata: ["reason": "\(error.description)", "path": "\(request.uri.path)"])
            throw APIError(.unauthorized, "invalid request")
        }
        return body
    }

    /// The first value of a header, by its lower-case name.
    static func header(_ request: Request, _ name: String) -> String? {
        request.headers.first { $0.name.canonicalName == name }?.value
    }
}
