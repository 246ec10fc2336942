import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import OneTouchEC2

/// The EC2 module's transport, on AsyncHTTPClient.
struct AsyncHTTPClientTransport: HTTPTransport {
    let client: HTTPClient

    func send(_ request: HTTPRequestData, timeout: Duration) async throws -> HTTPResponseData {
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
            status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) }, body: Data(buffer: body))
    }
}
