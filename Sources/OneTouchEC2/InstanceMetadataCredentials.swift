import Foundation
import OneTouchCore

/// Credentials of the EC2 instance role, fetched through IMDSv2:
/// `PUT /latest/api/token` (with `X-aws-ec2-metadata-token-ttl-seconds`), then
/// `GET /latest/meta-data/iam/security-credentials/` for the role name and
/// `GET …/security-credentials/<role>` for the JSON document.
///
/// The result is cached and refreshed once it is within `refreshMargin` (default 5 minutes) of
/// its `Expiration`; concurrent callers share one refresh. If a refresh fails while the cached
/// credentials have not yet expired, those are returned.
///
/// Environment: `AWS_EC2_METADATA_DISABLED=true` turns the provider off;
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT` replaces `http://169.254.169.254`.
public actor InstanceMetadataCredentialsProvider: AWSCredentialsProvider {
    public static let defaultEndpoint = "http://169.254.169.254"
    static let source = "instance metadata (IMDSv2)"
    static let tokenTTLSeconds = 21_600

    let endpoint: String
    let disabled: Bool
    let transport: any HTTPTransport
    let now: @Sendable () -> Date
    let refreshMargin: TimeInterval
    let timeout: Duration

    private var cached: AWSCredentials?
    private var refreshing: Task<AWSCredentials, any Error>?

    public init(
        environment: [String: String], transport: any HTTPTransport, now: @escaping @Sendable () -> Date = Date.init,
        refreshMargin: Duration = .seconds(300), timeout: Duration = .seconds(1)
    ) {
        var endpoint =
            environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 }
            ?? Self.defaultEndpoint
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        self.endpoint = endpoint
        self.disabled = environment["AWS_EC2_METADATA_DISABLED"]?.lowercased() == "true"
        self.transport = transport
        self.now = now
        self.refreshMargin = TimeInterval(refreshMargin.components.seconds)
        self.timeout = timeout
    }

    public func credentials() async throws -> AWSCredentials {
        if disabled {
            throw AWSCredentialsError.notConfigured(source: Self.source, reason: "disabled by AWS_EC2_METADATA_DISABLED")
        }
        if let cached, !needsRefresh(cached) { return cached }

        let task =
            refreshing
            ?? Task { [endpoint, transport, timeout] in
                try await Self.fetch(endpoint: endpoint, transport: transport, timeout: timeout)
            }
        refreshing = task
        do {
            let fresh = try await task.value
            refreshing = nil
            cached = fresh
            return fresh
        } catch {
            refreshing = nil
            if let cached, let expiration = cached.expiration, now() < expiration { return cached }
            throw error
        }
    }

    public func invalidate(_ used: AWSCredentials) async {
        if cached == used { cached = nil }
    }

    private func needsRefresh(_ credentials: AWSCredentials) -> Bool {
        guard let expiration = credentials.expiration else { return false }
        return now() >= expiration.addingTimeInterval(-refreshMargin)
    }

    // MARK: - The three IMDS calls

    static func fetch(endpoint: String, transport: any HTTPTransport, timeout: Duration) async throws -> AWSCredentials {
        let token = try await fetchToken(endpoint: endpoint, transport: transport, timeout: timeout)
        let tokenHeader = ("X-aws-ec2-metadata-token", token)
        let listPath = "/latest/meta-data/iam/security-credentials/"

        let list = try await get(endpoint + listPath, header: tokenHeader, transport: transport, timeout: timeout)
        guard list.status == 200 else {
            throw AWSCredentialsError.notConfigured(
                source: source,
                reason: list.status == 404
                    ? "no IAM instance profile is attached to this instance"
                    : "role list request failed with HTTP \(list.status)")
        }
        let roles = String(decoding: list.body, as: UTF8.self)
            .split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let role = roles.first(where: { !$0.isEmpty }) else {
            throw AWSCredentialsError.notConfigured(source: source, reason: "no IAM instance profile is attached to this instance")
        }

        let document = try await get(
            endpoint + listPath + PercentEncoding.encode(role), header: tokenHeader, transport: transport, timeout: timeout)
        guard document.status == 200 else {
            throw AWSCredentialsError.invalid(
                source: source, reason: "credentials request for role '\(role)' failed with HTTP \(document.status)")
        }
        return try decode(document.body, role: role)
    }

    private static func fetchToken(endpoint: String, transport: any HTTPTransport, timeout: Duration) async throws -> String {
        guard let url = URL(string: endpoint + "/latest/api/token") else {
            throw AWSCredentialsError.invalid(source: source, reason: "bad IMDS endpoint '\(endpoint)'")
        }
        let request = HTTPRequestData(
            method: "PUT", url: url, headers: [("X-aws-ec2-metadata-token-ttl-seconds", String(tokenTTLSeconds))])
        let response: HTTPResponseData
        do {
            response = try await transport.send(request, timeout: timeout)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw AWSCredentialsError.notConfigured(source: source, reason: "IMDS not reachable at \(endpoint) (\(error))")
        }
        let token = String(decoding: response.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard response.status == 200, !token.isEmpty else {
            throw AWSCredentialsError.notConfigured(
                source: source, reason: "IMDSv2 token request to \(endpoint) returned HTTP \(response.status)")
        }
        return token
    }

    private static func get(
        _ urlString: String, header: (String, String), transport: any HTTPTransport, timeout: Duration
    ) async throws -> HTTPResponseData {
        guard let url = URL(string: urlString) else {
            throw AWSCredentialsError.invalid(source: source, reason: "bad IMDS URL")
        }
        do {
            return try await transport.send(HTTPRequestData(method: "GET", url: url, headers: [header]), timeout: timeout)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw AWSCredentialsError.invalid(source: source, reason: "IMDS request failed (\(error))")
        }
    }

    /// The role credentials JSON (`Code`, `AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`, …).
    private struct Document: Decodable {
        var code: String?
        var accessKeyId: String?
        var secretAccessKey: String?
        var token: String?
        var expiration: String?

        enum CodingKeys: String, CodingKey {
            case code = "Code", accessKeyId = "AccessKeyId", secretAccessKey = "SecretAccessKey"
            case token = "Token", expiration = "Expiration"
        }
    }

    static func decode(_ body: Data, role: String) throws -> AWSCredentials {
        guard let document = try? JSONDecoder().decode(Document.self, from: body) else {
            throw AWSCredentialsError.invalid(source: source, reason: "role '\(role)': credentials document is not valid JSON")
        }
        if let code = document.code, code != "Success" {
            throw AWSCredentialsError.invalid(source: source, reason: "role '\(role)': IMDS reported Code=\(code)")
        }
        guard let keyId = document.accessKeyId, !keyId.isEmpty,
            let secret = document.secretAccessKey, !secret.isEmpty,
            let token = document.token, !token.isEmpty,
            let expiration = document.expiration.flatMap(ISO8601.parse)
        else {
            throw AWSCredentialsError.invalid(
                source: source, reason: "role '\(role)': document lacks AccessKeyId, SecretAccessKey, Token or Expiration")
        }
        return AWSCredentials(
            accessKeyId: keyId, secretAccessKey: secret, sessionToken: token, expiration: expiration,
            source: "instance role \(role)")
    }
}
