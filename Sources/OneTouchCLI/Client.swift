import AsyncHTTPClient
import Foundation
import HummingbirdTLS
import NIOCore
import NIOHTTP1
import OneTouchCore
import Synchronization

/// Talks to `onetouch serve`'s admin API.
struct AdminClient {
    let server: String
    let token: Secret
    let reachable = ReachabilityCheck()

    /// A failure the CLI turns into an exit code and a message.
    struct Failure: Error, CustomStringConvertible {
        var exitCode: Int32
        var description: String
    }

    /// Whether the server answered `/healthz` within 3 s: a server that is not there is reported at
    /// once (AsyncHTTPClient would keep retrying the connection until the request's deadline).
    func checkReachable() async throws {
        var request = HTTPClientRequest(url: server.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + "/healthz")
        request.method = .GET
        do {
            _ = try await Self.http.execute(request, timeout: .seconds(3))
        } catch {
            throw unreachable(error)
        }
    }

    /// The HTTP client: the system's trusted certificates, or only those of `ONETOUCH_CA_FILE` (PEM)
    /// when `serve` has a certificate from a private CA.
    static let http: HTTPClient = {
        guard let file = ProcessInfo.processInfo.environment["ONETOUCH_CA_FILE"], !file.isEmpty else { return .shared }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(file)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
    }()

    func unreachable(_ error: any Error) -> Failure {
        if "\(error)".contains("CERTIFICATE_VERIFY_FAILED") {
            return Failure(
                exitCode: 3,
                description:
                    "the onetouch server at \(server) has a certificate this machine does not trust; set ONETOUCH_CA_FILE to the PEM file of the CA that signed it"
            )
        }
        return Failure(
            exitCode: 3,
            description:
                "cannot reach the onetouch server at \(server) (\(error)); is `onetouch serve` running? Point --server or ONETOUCH_SERVER at it"
        )
    }

    func send<Body: Encodable>(_ method: HTTPMethod, _ path: String, body: Body?) async throws -> Data {
        try await reachable.check(self)
        var request = HTTPClientRequest(url: server.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token.reveal())")
        request.headers.add(name: "Accept", value: "application/json")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try APIDates.encoder().encode(body)))
        }
        let response: HTTPClientResponse
        do {
            response = try await Self.http.execute(request, timeout: .seconds(30))
        } catch {
            throw unreachable(error)
        }
        let data = Data(buffer: try await response.body.collect(upTo: 16 * 1024 * 1024))
        guard (200..<300).contains(Int(response.status.code)) else {
            var message = (try? JSONDecoder().decode(ErrorBody.self, from: data).error) ?? String(decoding: data, as: UTF8.self)
            if message.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                message =
                    "the server answered HTTP \(response.status.code) without saying why; `onetouch serve`'s log says what went wrong (a full disk, for one)"
            }
            let code: Int32 = [400, 404, 409].contains(Int(response.status.code)) ? 2 : 1
            if response.status.code == 401 {
                throw Failure(
                    exitCode: 2, description: "the server refused the admin token (\(message)); set ONETOUCH_TOKEN or --token-file")
            }
            throw Failure(exitCode: code, description: message)
        }
        return data
    }

    func get(_ path: String) async throws -> Data {
        try await send(.GET, path, body: Optional<ErrorBody>.none)
    }

    func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        try APIDates.decoder().decode(T.self, from: data)
    }

    static func escape(_ name: String) -> String {
        name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?#"))) ?? name
    }
}

/// Checks the server once per client, before its first request.
final class ReachabilityCheck: Sendable {
    private let done = Mutex(false)

    func check(_ client: AdminClient) async throws {
        if done.withLock({ $0 }) { return }
        try await client.checkReachable()
        done.withLock { $0 = true }
    }
}
