import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import OneTouchCore
import OneTouchServer
import OneTouchTesting

/// The HTTP API over an engine test bed, as the API tests drive it: one admin token, helpers for
/// headers and bodies.
protocol APITest {}

extension APITest {
    static var adminToken: String { "admin-token-0123456789abcdef" }

    func withServer(
        cloud: FakeCloud = FakeCloud(), _ body: @escaping @Sendable (EngineTestBed, any TestClientProtocol) async throws -> Void
    ) async throws {
        let bed = try EngineTestBed(cloud: cloud)
        defer { bed.remove() }
        let router = OneTouchServer.router(
            service: bed.service, reconciler: Reconciler(store: bed.store, cloud: bed.cloud),
            adminTokens: [AdminToken(name: "ops", token: Secret(Self.adminToken))], drift: bed.drift())
        try await Application(router: router).test(.router) { client in try await body(bed, client) }
    }

    func json(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
    func admin() -> HTTPFields { [.authorization: "Bearer \(Self.adminToken)", .contentType: "application/json"] }
    /// A host's headers: its token and its machine's boot secret (`claim`).
    func bearer(_ token: Secret, claim: String = "boot-secret-of-the-first-machine") -> HTTPFields {
        [
            .authorization: "Bearer \(token.reveal())", .contentType: "application/json",
            HTTPFields.Element.Name("x-onetouch-claim")!: claim,
        ]
    }
}
