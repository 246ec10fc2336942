import Foundation
import Hummingbird
import OneTouchCore

struct ReportCredentialBody: Codable {
    var credential: String
}

extension OneTouchServer {
    static func addRunRoutes(to router: Router<BasicRequestContext>, drift: DriftService) {
        let claimHeader = HTTPFields.Element.Name("x-onetouch-claim")!
        // Issued while the host is set up, with the bootstrap token and the machine's boot secret.
        router.post("/v1/hosts/:id/report-credential") { request, context in
            let id = try context.parameters.require("id")
            let token = try bearer(request)
            try await call {
                try await drift.hosts.checkClaim(
                    hostID: id, token: token, claim: request.headers[claimHeader], what: "POST /report-credential")
            }
            let credential = try await call { try await drift.issueCredential(hostID: id, token: token) }
            return try json(.ok, ReportCredentialBody(credential: credential.reveal()), headers: [.cacheControl: "no-store"])
        }
        // Every configuration run, for as long as the host lives: the report credential and nothing else.
        router.post("/v1/hosts/:id/runs") { request, context in
            let id = try context.parameters.require("id")
            let credential = try bearer(request)
            let run: ConfigRunReport = try await decodeBody(request)
            return try json(
                .ok, try await call { try await drift.report(hostID: id, credential: credential, run) },
                headers: [.cacheControl: "no-store"])
        }
    }

    static func addDriftAdminRoutes(to router: Router<BasicRequestContext>, drift: DriftService, adminTokens: [AdminToken]) {
        let admin = router.group("/v1/admin").add(middleware: AdminAuth(tokens: adminTokens))
        admin.get("/drift") { _, _ in try json(.ok, try drift.list()) }
        admin.get("/hosts/:name/drift") { _, context in
            let name = try context.parameters.require("name")
            let host = try await call { try drift.hosts.host(named: name) }
            guard let view = try drift.store.driftViews(hostID: host.id).first else {
                throw APIError(.notFound, "\(name) is \(host.state.rawValue): drift is kept for ready hosts")
            }
            return try json(.ok, view)
        }
        admin.post("/drift/cloud") { _, _ in try json(.ok, try await cloudCall { try await drift.checkCloud() }) }
        admin.post("/check") { request, _ in
            let body: CheckRequest = try await decodeBody(request)
            guard body.all || body.role != nil || !body.names.isEmpty else {
                throw APIError(.badRequest, "name the hosts, a role, or all")
            }
            return try json(
                .ok, CheckAnswer(hosts: try await call { try await drift.requestCheck(names: body.names, role: body.role, all: body.all) }))
        }
        admin.post("/hosts/:name/report-credential/rotate") { _, context in
            let name = try context.parameters.require("name")
            try await call { try await drift.rotateCredential(name: name) }
            return Response(status: .noContent)
        }
    }
}
