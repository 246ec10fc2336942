import Foundation
import OneTouchCore

/// Credentials of an IAM role assumed with a web identity token (EKS service accounts, GitHub
/// Actions OIDC, …) through STS `AssumeRoleWithWebIdentity`, as the AWS CLI does:
/// `AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN` (and optionally `AWS_ROLE_SESSION_NAME`), or the
/// profile's `web_identity_token_file`, `role_arn` and `role_session_name`.
///
/// The token file is read on every call (its issuer rotates it). The call is unsigned; it goes to
/// `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, the profile's `sts` endpoint, or else the region's STS
/// endpoint (`https://sts.<region>.amazonaws.com`, the global one without a region). Put it behind
/// ``AWSCredentialsChain``, which caches the credentials until shortly before they expire.
public struct WebIdentityCredentialsProvider: AWSCredentialsProvider {
    static let source = "web identity"
    static let stsVersion = "2011-06-15"
    let environment: [String: String]
    let transport: any HTTPTransport
    let region: String?
    let timeout: Duration

    public init(environment: [String: String], transport: any HTTPTransport, region: String? = nil, timeout: Duration = .seconds(10)) {
        self.environment = environment
        self.transport = transport
        self.region = region
        self.timeout = timeout
    }

    struct Settings: Equatable {
        var tokenFile: String
        var roleARN: String
        var sessionName: String
        var endpoint: URL
    }

    /// Where the token and the role come from; `notConfigured` when neither the environment nor the
    /// profile names both.
    func settings() throws -> Settings {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        let config = try AWSSharedConfig(environment: environment)
        let profile = config.profile ?? [:]
        let tokenFile: String
        let roleARN: String
        var sessionName: String?
        if let file = value("AWS_WEB_IDENTITY_TOKEN_FILE"), let role = value("AWS_ROLE_ARN") {
            (tokenFile, roleARN, sessionName) = (file, role, value("AWS_ROLE_SESSION_NAME"))
        } else if let file = profile["web_identity_token_file"].flatMap({ $0.isEmpty ? nil : $0 }),
            let role = profile["role_arn"].flatMap({ $0.isEmpty ? nil : $0 })
        {
            (tokenFile, roleARN, sessionName) = (file, role, profile["role_session_name"].flatMap { $0.isEmpty ? nil : $0 })
        } else {
            if value("AWS_WEB_IDENTITY_TOKEN_FILE") != nil || value("AWS_ROLE_ARN") != nil {
                throw AWSCredentialsError.invalid(
                    source: Self.source, reason: "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN must be set together")
            }
            throw AWSCredentialsError.notConfigured(
                source: Self.source, reason: "AWS_WEB_IDENTITY_TOKEN_FILE is not set and the profile has no web_identity_token_file")
        }
        let home = environment["HOME"] ?? "~"
        let path = tokenFile.hasPrefix("~/") ? home + tokenFile.dropFirst(1) : tokenFile
        let endpointText =
            [value("AWS_ENDPOINT_URL_STS"), value("AWS_ENDPOINT_URL"), config.endpointURL(service: "sts")].compactMap { $0 }.first
            ?? Self.regionalEndpoint(region ?? value("AWS_REGION") ?? value("AWS_DEFAULT_REGION") ?? config.region)
        guard let endpoint = URL(string: endpointText), endpoint.scheme == "https" || endpoint.scheme == "http" else {
            throw AWSCredentialsError.invalid(source: Self.source, reason: "invalid STS endpoint '\(endpointText)'")
        }
        return Settings(
            tokenFile: path, roleARN: roleARN,
            sessionName: sessionName ?? "onetouch-\(Int(Date().timeIntervalSince1970 * 1000))", endpoint: endpoint)
    }

    static func regionalEndpoint(_ region: String?) -> String {
        guard let region, EC2Settings.isValidRegion(region) else { return "https://sts.amazonaws.com/" }
        return "https://sts.\(region).amazonaws.com" + (region.hasPrefix("cn-") ? ".cn/" : "/")
    }

    public func credentials() async throws -> AWSCredentials {
        let settings = try settings()
        let token: String
        do {
            token = try String(contentsOfFile: settings.tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            throw AWSCredentialsError.invalid(source: Self.source, reason: "cannot read the token file \(settings.tokenFile): \(error)")
        }
        guard !token.isEmpty else {
            throw AWSCredentialsError.invalid(source: Self.source, reason: "the token file \(settings.tokenFile) is empty")
        }
        let body = PercentEncoding.formEncode([
            ("Action", "AssumeRoleWithWebIdentity"), ("Version", Self.stsVersion), ("RoleArn", settings.roleARN),
            ("RoleSessionName", settings.sessionName), ("WebIdentityToken", token),
        ])
        let request = HTTPRequestData(
            method: "POST", url: settings.endpoint,
            headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"), ("Accept", "text/xml")],
            body: Data(body.utf8))
        let response: HTTPResponseData
        do {
            response = try await transport.send(request, timeout: timeout)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw AWSCredentialsError.invalid(source: Self.source, reason: "STS at \(settings.endpoint) is not reachable (\(error))")
        }
        return try Self.decode(response, role: settings.roleARN)
    }

    /// `AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/Credentials`, or STS's error.
    static func decode(_ response: HTTPResponseData, role: String) throws -> AWSCredentials {
        let root = try? XMLElementNode.parse(response.body)
        guard (200..<300).contains(response.status) else {
            let error = root.flatMap { EC2ResponseDecoder.firstDescendant(named: "Error", in: $0) }
            let code = error?.nonEmptyValue("Code") ?? "HTTP\(response.status)"
            let message = error?.value("Message") ?? ""
            throw AWSCredentialsError.invalid(
                source: source, reason: "STS refused AssumeRoleWithWebIdentity for \(role): \(code): \(message) (HTTP \(response.status))")
        }
        guard let credentials = root?.child(path: "AssumeRoleWithWebIdentityResult", "Credentials"),
            let keyId = credentials.nonEmptyValue("AccessKeyId"), let secret = credentials.nonEmptyValue("SecretAccessKey"),
            let token = credentials.nonEmptyValue("SessionToken"),
            let expiration = credentials.nonEmptyValue("Expiration").flatMap(ISO8601.parse)
        else {
            throw AWSCredentialsError.invalid(
                source: source, reason: "STS answer for \(role) lacks AccessKeyId, SecretAccessKey, SessionToken or Expiration")
        }
        return AWSCredentials(
            accessKeyId: keyId, secretAccessKey: secret, sessionToken: token, expiration: expiration, source: "web identity role \(role)")
    }
}
