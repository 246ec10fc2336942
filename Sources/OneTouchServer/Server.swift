import Foundation
import Hummingbird
import Logging
import NIOCore
import OneTouchBuildInfo
import OneTouchCore

/// The HTTP side of `onetouch serve`: the admin API (bearer tokens), the host API (per-host tokens)
/// and `/healthz`. It records what callers said; the workflow decides what happens.
public enum OneTouchServer {
    /// Largest request body accepted: a 64 KiB log tail plus its JSON envelope.
    public static let maxBodyBytes = 80 * 1024

    /// Which APIs a listener serves: both (one address), or one of them (`host_listen` gives the host
    /// API an address of its own).
    public enum APIs: Sendable { case both, admin, host }

    /// `/healthz` (liveness): the process answers, and says which build it is.
    struct Liveness: Encodable {
        var status = "ok"
        var version = BuildInfo.version
        var commit = BuildInfo.commit
    }

    public static func router(
        service: HostService, reconciler: Reconciler, adminTokens: [AdminToken], serving apis: APIs = .both,
        readiness: ReadinessProbe? = nil, metrics: (@Sendable () async throws -> [UInt8])? = nil, secureCookies: Bool = false,
        drift: DriftService? = nil
    ) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.get("/healthz") { _, _ in try json(.ok, Liveness()) }
        // Readiness, on the admin listener: the steps' last errors are for operators, not for hosts.
        if apis != .host, let readiness {
            router.get("/readyz") { _, _ in
                let answer = await readiness.check()
                return try json(answer.ready ? .ok : .serviceUnavailable, answer, headers: [.cacheControl: "no-store"])
            }
        }
        if apis != .host, let metrics {
            router.get("/metrics") { _, _ in
                Response(
                    status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
                    body: .init(byteBuffer: ByteBuffer(bytes: try await metrics())))
            }
        }
        if apis != .host {
            addStatusRoutes(to: router, store: service.store, adminTokens: adminTokens, secureCookies: secureCookies)
        }
        if apis != .admin { addHostRoutes(to: router, service: service) }
        if apis != .host { addAdminRoutes(to: router, service: service, reconciler: reconciler, adminTokens: adminTokens) }
        if let drift {
            if apis != .admin { addRunRoutes(to: router, drift: drift) }
            if apis != .host { addDriftAdminRoutes(to: router, drift: drift, adminTokens: adminTokens) }
        }
        return router
    }

    static func addHostRoutes(to router: Router<BasicRequestContext>, service: HostService) {
        // MARK: Host API
        // Every host API call carries the machine's boot secret; the first one presented binds the host.
        let claimHeader = HTTPFields.Element.Name("x-onetouch-claim")!
        router.post("/v1/hosts/:id/claim") { request, context in
            let id = try context.parameters.require("id")
            let token = try bearer(request)
            try await call {
                try await service.checkClaim(hostID: id, token: token, claim: request.headers[claimHeader], what: "POST /claim")
            }
            return Response(status: .noContent)
        }
        router.post("/v1/hosts/:id/reports") { request, context in
            let id = try context.parameters.require("id")
            let token = try bearer(request)
            try await call {
                try await service.checkClaim(hostID: id, token: token, claim: request.headers[claimHeader], what: "POST /reports")
            }
            let report: HostService.Report = try await decodeBody(request)
            // The answer names the attempt this report belongs to: a host that failed waits for /task to
            // name another.
            return try json(.ok, try await call { try await service.report(hostID: id, token: token, report) })
        }
        router.get("/v1/hosts/:id/enrollment") { request, context in
            let id = try context.parameters.require("id")
            let token = try bearer(request)
            try await call {
                try await service.checkClaim(hostID: id, token: token, claim: request.headers[claimHeader], what: "GET /enrollment")
            }
            switch try await call({ try await service.enrollment(hostID: id, token: token) }) {
            case .tooEarly:
                return try json(
                    HTTPResponse.Status(code: 425, reasonPhrase: "Too Early"),
                    ErrorBody(error: "pre-registration is not done yet; poll again in a few seconds"))
            case .gone:
                return try json(.gone, ErrorBody(error: "the one-time password was already fetched or wiped"))
            case .delivered(let info, let otp):
                return try json(
                    .ok,
                    EnrollmentBody(info, oneTimePassword: otp.reveal()),
                    headers: [.cacheControl: "no-store"])
            }
        }
        router.get("/v1/hosts/:id/volume") { request, context in
            let id = try context.parameters.require("id")
            let token = try bearer(request)
            try await call {
                try await service.checkClaim(hostID: id, token: token, claim: request.headers[claimHeader], what: "GET /volume")
            }
            guard let volume = try await call({ try service.volume(hostID: id, token: token) }) else {
                return try json(
                    HTTPResponse.Status(code: 425, reasonPhrase: "Too Early"),
                    ErrorBody(error: "the data volume is not attached yet; poll again in a few seconds"))
            }
            return try json(.ok, VolumeBody(volumeId: volume.id, device: volume.device))
        }

        router.get("/v1/hosts/:id/task") { request, context in
            let id = try context.parameters.require("id")
            let token = try bearer(request)
            try await call {
                try await service.checkClaim(hostID: id, token: token, claim: request.headers[claimHeader], what: "GET /task")
            }
            return try json(.ok, try await call { try service.task(hostID: id, token: token) })
        }
        router.get("/v1/hosts/:id/config-credential") { request, context in
            let id = try context.parameters.require("id")
            let token = try bearer(request)
            try await call {
                try await service.checkClaim(hostID: id, token: token, claim: request.headers[claimHeader], what: "GET /config-credential")
            }
            guard let credential = try await call({ try service.repositoryCredential(hostID: id, token: token) }) else {
                return Response(status: .noContent)
            }
            return try json(
                .ok, RepositoryCredentialBody(kind: credential.kind.rawValue, secret: credential.secret.reveal()),
                headers: [.cacheControl: "no-store"])
        }

    }

    static func addAdminRoutes(
        to router: Router<BasicRequestContext>, service: HostService, reconciler: Reconciler, adminTokens: [AdminToken]
    ) {
        // MARK: Admin API
        let admin = router.group("/v1/admin").add(middleware: AdminAuth(tokens: adminTokens))
        admin.post("/hosts") { request, _ in
            let body: HostService.CreateRequest = try await decodeBody(request)
            let host = try await call { try await service.create(body, actor: adminActor(request)) }
            return try json(.created, HostView(host))
        }
        admin.get("/hosts") { request, _ in
            var state: HostState.Kind?
            var drift: DriftState?
            if let raw = request.uri.queryParameters.get("drift") {
                guard let value = DriftState(rawValue: raw) else {
                    throw APIError(
                        .badRequest,
                        "unknown drift state '\(raw)'; use one of \(DriftState.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                drift = value
            }
            if let raw = request.uri.queryParameters.get("state") {
                guard let kind = HostState.Kind(rawValue: raw) else {
                    throw APIError(
                        .badRequest, "unknown state '\(raw)'; use one of \(HostState.Kind.allCases.map(\.rawValue).joined(separator: ", "))"
                    )
                }
                state = kind
            }
            let states = try service.store.driftStates()
            return try json(
                .ok,
                try service.store.hosts(state: drift == nil ? state : .ready).filter { drift == nil || states[$0.id] == drift }.map {
                    HostView($0, drift: states[$0.id])
                })
        }
        admin.get("/hosts/:name") { _, context in
            let name = try context.parameters.require("name")
            return try json(.ok, try await call { try service.status(named: name) })
        }
        admin.get("/hosts/:name/events") { request, context in
            let name = try context.parameters.require("name")
            let after = request.uri.queryParameters.get("after").flatMap(Int64.init) ?? 0
            let host = try await call { try service.host(named: name) }
            return try json(.ok, try service.store.events(hostID: host.id, after: after).map(EventView.init))
        }
        admin.get("/hosts/:name/user-data") { _, context in
            let name = try context.parameters.require("name")
            let text = try await call { try service.renderUserData(name) }
            return Response(
                status: .ok, headers: [.contentType: "text/cloud-config; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        admin.post("/hosts/:name/resume") { request, context in
            let name = try context.parameters.require("name")
            return try json(.ok, HostView(try await call { try await service.resume(name, actor: adminActor(request)) }))
        }
        admin.post("/resume-failed") { request, _ in
            try json(.ok, try await call { try await service.resumeAllFailed(actor: adminActor(request)) }.map { HostView($0) })
        }
        admin.post("/hosts/:name/retry") { request, context in
            let name = try context.parameters.require("name")
            let body: RetryRequest = try await decodeBody(request)
            return try json(.ok, HostView(try await call { try await service.retry(name, from: body.from, actor: adminActor(request)) }))
        }
        admin.post("/hosts/:name/destroy") { request, context in
            let name = try context.parameters.require("name")
            let body: DestroyRequest = try await decodeBody(request)
            return try json(
                .ok, HostView(try await call { try await service.destroy(name, keepVolume: body.keepVolume, actor: adminActor(request)) }))
        }
        admin.get("/reconcile") { _, _ in try json(.ok, try await cloudCall { try await reconciler.run(fix: false) }) }
        admin.post("/reconcile") { request, _ in
            let body: ReconcileRequest = try await decodeBody(request)
            return try json(
                .ok, try await cloudCall { try await reconciler.run(fix: true, includeUnknownHosts: body.includeUnknownHosts) })
        }
    }

    // MARK: Helpers

    static func bearer(_ request: Request) throws -> String {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "), header.count > 7 else {
            throw APIError(.unauthorized, "missing bearer token")
        }
        return String(header.dropFirst(7))
    }

    static func decodeBody<T: Decodable>(_ request: Request) async throws -> T {
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: maxBodyBytes) } catch {
            throw APIError(.contentTooLarge, "request body larger than \(maxBodyBytes) bytes")
        }
        do { return try APIDates.decoder().decode(T.self, from: Data(buffer: buffer)) } catch {
            throw APIError(.badRequest, "invalid JSON body: \(describe(error))")
        }
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "missing field '\(key.stringValue)'"
        case DecodingError.dataCorrupted(let context): context.debugDescription
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "field '\(context.codingPath.map(\.stringValue).joined(separator: "."))': \(context.debugDescription)"
        default: "unreadable"
        }
    }

    static func json<T: Encodable>(_ status: HTTPResponse.Status, _ value: T, headers: HTTPFields = [:]) throws -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        let data = try APIDates.encoder().encode(value)
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// A call to the cloud on behalf of an admin request: its failure is a 502 that says why.
    static func cloudCall<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch {
            throw APIError(.badGateway, "the cloud did not answer as expected (\(StepError.classify(error).message)); try again")
        }
    }

    /// Maps service errors to HTTP statuses.
    static func call<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let error as ServiceError {
            switch error.kind {
            case .invalid: throw APIError(.badRequest, error.message)
            case .notFound: throw APIError(.notFound, error.message)
            case .conflict: throw APIError(.conflict, error.message)
            case .unauthorized: throw APIError(.unauthorized, error.message)
            case .forbidden: throw APIError(.forbidden, error.message)
            case .gone: throw APIError(.gone, error.message)
            case .tooManyRequests: throw APIError(.tooManyRequests, error.message)
            }
        }
    }
}

/// An error response with a JSON body `{"error": "..."}`.
struct APIError: HTTPResponseError {
    let status: HTTPResponse.Status
    let message: String
    init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }
    func response(from request: Request, context: some RequestContext) throws -> Response {
        try OneTouchServer.json(status, ErrorBody(error: message))
    }
}

/// An admin token as `serve` knows it: its name (what events record as the actor) and its SHA-256.
public struct AdminToken: Sendable {
    public let name: String
    public let hash: Data
    public init(name: String, token: Secret) {
        self.name = name
        self.hash = SecretBox.tokenHash(token)
    }

    /// The name of the token `presented` is, or nil. Every token is compared (in constant time), so
    /// the time taken says nothing about which one matched.
    static func name(of presented: String, in tokens: [AdminToken]) -> String? {
        var matched: String?
        for candidate in tokens where SecretBox.tokenMatches(presented, hash: candidate.hash) { matched = candidate.name }
        return matched
    }
}

extension OneTouchServer {
    /// The header `AdminAuth` sets to the name of the token that authenticated the request (any such
    /// header a client sends is replaced).
    static let adminNameHeader = HTTPFields.Element.Name("x-onetouch-admin")!

    /// The actor an admin request is recorded under: `admin:NAME`.
    static func adminActor(_ request: Request) -> String {
        "admin:" + (request.headers[adminNameHeader] ?? "unknown")
    }
}

/// Admin bearer tokens, compared (as SHA-256) in constant time; the request goes on carrying the name
/// of the token that matched.
struct AdminAuth<Context: RequestContext>: RouterMiddleware {
    let tokens: [AdminToken]
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let token = try OneTouchServer.bearer(request)
        guard let name = AdminToken.name(of: token, in: tokens) else { throw APIError(.unauthorized, "invalid admin token") }
        var head = request.head
        head.headerFields[OneTouchServer.adminNameHeader] = name
        return try await next(Request(head: head, body: request.body), context)
    }
}
