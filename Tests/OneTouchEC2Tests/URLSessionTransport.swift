import Foundation
import OneTouchCore
import OneTouchEC2

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Test-only ``HTTPTransport`` on URLSession, for the live moto checks. The orchestrator uses
/// its own AsyncHTTPClient transport.
struct URLSessionTransport: HTTPTransport {
    func send(_ request: HTTPRequestData, timeout: Duration) async throws -> HTTPResponseData {
        var urlRequest = URLRequest(url: request.url)
        urlRequest.httpMethod = request.method
        urlRequest.timeoutInterval = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        for (name, value) in request.headers { urlRequest.addValue(value, forHTTPHeaderField: name) }
        if !request.body.isEmpty { urlRequest.httpBody = request.body }

        let (data, response): (Data, URLResponse)
        do {
            (data, response) = try await URLSession.shared.data(for: urlRequest)
        } catch let error as URLError where error.code == .timedOut {
            throw HTTPTransportError.timedOut
        } catch let error as URLError {
            throw HTTPTransportError.connectionFailed(error.localizedDescription)
        }
        guard let http = response as? HTTPURLResponse else {
            throw HTTPTransportError.connectionFailed("not an HTTP response")
        }
        let headers = http.allHeaderFields.compactMap { key, value -> (String, String)? in
            guard let name = key as? String else { return nil }
            return (name, "\(value)")
        }
        return HTTPResponseData(status: http.statusCode, headers: headers, body: data)
    }
}
