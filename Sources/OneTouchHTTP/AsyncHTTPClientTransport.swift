import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import OneTouchCore

/// The adapters' `HTTPTransport` on AsyncHTTPClient, optionally trusting only a given CA bundle
/// (FreeIPA's own CA, say).
public final class AsyncHTTPClientTransport: HTTPTransport {
    let client: HTTPClient
    private let owned: Bool

    /// A transport on the shared client (system trust roots).
    public init() {
        client = HTTPClient.shared
        owned = false
    }

    /// A transport whose TLS trusts only the certificates in `caBundle` (PEM).
    public init(caBundle: String) throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(caBundle)
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.redirectConfiguration = .disallow
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        owned = true
    }

    deinit {
        if owned { try? client.syncShutdown() }
    }

    public func send(_ request: HTTPRequestData, timeout: Duration) async throws -> HTTPResponseData {
        var outgoing = HTTPClientRequest(url: request.url.absoluteString)
        outgoing.method = HTTPMethod(rawValue: request.method)
        for (name, value) in request.headers { outgoing.headers.add(name: name, value: value) }
        if !request.body.isEmpty { outgoing.body = .bytes(ByteBuffer(bytes: request.body)) }
        let response: HTTPClientResponse
        do {
            response = try await client.execute(outgoing, timeout: .milliseconds(Int64(timeout.seconds * 1000)))
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            throw HTTPTransportError.timedOut
        } catch {
            throw HTTPTransportError.connectionFailed(String(describing: error))
        }
        let body: ByteBuffer
        do { body = try await response.body.collect(upTo: 32 * 1024 * 1024) } catch {
            throw HTTPTransportError.connectionFailed("response body: \(error)")
        }
        return HTTPResponseData(
            status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) }, body: Data(body.readableBytesView))
    }
}
