import Foundation
import OneTouchCore

/// An AWS access key pair, optionally temporary. `description`, `debugDescription` and the
/// reflection mirror (`dump`, `print`) never show the secret key or the session token.
public struct AWSCredentials: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    public let accessKeyId: String
    public let secretAccessKey: String
    public let sessionToken: String?
    /// When temporary credentials stop working; `nil` for long-term keys.
    public let expiration: Date?
    /// Where they came from (for diagnostics), e.g. `environment`, `profile default`.
    public let source: String

    public init(
        accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil, source: String = "static"
    ) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
        self.source = source
    }

    public var description: String {
        var text = "AWSCredentials(accessKeyId: \(accessKeyId), secretAccessKey: <redacted>"
        if sessionToken != nil { text += ", sessionToken: <redacted>" }
        if let expiration { text += ", expiration: \(expiration)" }
        return text + ", source: \(source))"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "accessKeyId": accessKeyId, "secretAccessKey": "<redacted>",
                "sessionToken": sessionToken == nil ? "nil" : "<redacted>",
                "expiration": expiration as Any, "source": source,
            ])
    }
}

/// Something that can produce credentials on demand (and refresh them if they expire).
public protocol AWSCredentialsProvider: Sendable {
    func credentials() async throws -> AWSCredentials
    /// AWS refused `used` (expired, unknown): forget them if cached, so the next call reads afresh.
    func invalidate(_ used: AWSCredentials) async
}

extension AWSCredentialsProvider {
    /// Providers that cache nothing have nothing to forget.
    public func invalidate(_ used: AWSCredentials) async {}
}

public enum AWSCredentialsError: Error, Sendable, Equatable, CustomStringConvertible {
    /// This source has nothing to offer; a chain moves on to the next source.
    case notConfigured(source: String, reason: String)
    /// This source is configured but unusable (partial keys, unknown profile, bad IMDS answer).
    /// A chain stops here rather than silently using another identity.
    case invalid(source: String, reason: String)
    case unreadableFile(path: String, reason: String)
    /// Every source of a chain was `notConfigured`; one reason per source.
    case noCredentials(reasons: [String])

    public var description: String {
        switch self {
        case .notConfigured(let source, let reason): "no AWS credentials from \(source): \(reason)"
        case .invalid(let source, let reason): "invalid AWS credentials from \(source): \(reason)"
        case .unreadableFile(let path, let reason): "cannot read AWS file \(path): \(reason)"
        case .noCredentials(let reasons):
            "no AWS credentials found (" + reasons.joined(separator: "; ") + ")"
        }
    }
}

/// Fixed credentials (tests, or keys from the orchestrator's own secret store).
public struct StaticCredentialsProvider: AWSCredentialsProvider {
    let value: AWSCredentials
    public init(_ credentials: AWSCredentials) { value = credentials }
    public func credentials() async throws -> AWSCredentials { value }
}

/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`
/// (legacy `AWS_SECURITY_TOKEN` also accepted) from an injected environment.
public struct EnvironmentCredentialsProvider: AWSCredentialsProvider {
    static let source = "environment"
    let environment: [String: String]

    public init(environment: [String: String]) { self.environment = environment }

    public func credentials() async throws -> AWSCredentials {
        let keyId = environment["AWS_ACCESS_KEY_ID"].flatMap { $0.isEmpty ? nil : $0 }
        let secret = environment["AWS_SECRET_ACCESS_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        switch (keyId, secret) {
        case (nil, nil):
            throw AWSCredentialsError.notConfigured(source: Self.source, reason: "AWS_ACCESS_KEY_ID is not set")
        case (.some, nil):
            throw AWSCredentialsError.invalid(source: Self.source, reason: "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
        case (nil, .some):
            throw AWSCredentialsError.invalid(source: Self.source, reason: "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not")
        case (.some(let keyId), .some(let secret)):
            let token = [environment["AWS_SESSION_TOKEN"], environment["AWS_SECURITY_TOKEN"]]
                .compactMap { $0 }.first { !$0.isEmpty }
            return AWSCredentials(accessKeyId: keyId, secretAccessKey: secret, sessionToken: token, source: Self.source)
        }
    }
}

/// Static keys of the selected profile in `~/.aws/credentials` / `~/.aws/config`:
/// `aws_access_key_id`, `aws_secret_access_key` and `aws_session_token`. A profile with
/// `credential_process` or `web_identity_token_file` (and no keys) is left to
/// ``ProcessCredentialsProvider`` and ``WebIdentityCredentialsProvider``; `role_arn` with a source
/// profile and SSO are not supported. The files are read on every call; put the provider behind
/// ``AWSCredentialsChain`` (which caches, and reads again when AWS refuses the keys).
public struct SharedFileCredentialsProvider: AWSCredentialsProvider {
    let environment: [String: String]

    public init(environment: [String: String]) { self.environment = environment }

    public func credentials() async throws -> AWSCredentials {
        let config = try AWSSharedConfig(environment: environment)
        let source = "profile \(config.profileName)"
        let files = "\(config.credentialsFilePath), \(config.configFilePath)"
        guard let profile = config.profile else {
            let reason = "profile '\(config.profileName)' not found in \(files)"
            // An explicitly requested profile that does not exist is a configuration error.
            throw config.profileExplicitlyChosen
                ? AWSCredentialsError.invalid(source: source, reason: reason)
                : AWSCredentialsError.notConfigured(source: source, reason: reason)
        }
        let keyId = profile["aws_access_key_id"].flatMap { $0.isEmpty ? nil : $0 }
        let secret = profile["aws_secret_access_key"].flatMap { $0.isEmpty ? nil : $0 }
        switch (keyId, secret) {
        case (.some(let keyId), .some(let secret)):
            let token = profile["aws_session_token"].flatMap { $0.isEmpty ? nil : $0 }
            return AWSCredentials(accessKeyId: keyId, secretAccessKey: secret, sessionToken: token, source: source)
        case (nil, nil):
            var reason = "profile '\(config.profileName)' has no aws_access_key_id"
            if profile["credential_process"] != nil || profile["web_identity_token_file"] != nil {
                // Another provider of the chain reads this profile.
                throw AWSCredentialsError.notConfigured(source: source, reason: reason)
            }
            if profile["role_arn"] != nil || profile["sso_session"] != nil || profile["sso_start_url"] != nil {
                reason += " (role_arn with a source profile, and SSO profiles are not supported)"
            }
            throw config.profileExplicitlyChosen
                ? AWSCredentialsError.invalid(source: source, reason: reason)
                : AWSCredentialsError.notConfigured(source: source, reason: reason)
        default:
            throw AWSCredentialsError.invalid(
                source: source,
                reason: "profile '\(config.profileName)' needs both aws_access_key_id and aws_secret_access_key")
        }
    }
}

/// Tries providers in order; a provider that is `notConfigured` passes to the next, any other
/// error stops the chain. The first provider that succeeds is remembered and its credentials are
/// cached: for good when they do not expire, else until `refreshMargin` before their expiration,
/// when that provider is asked again (concurrent callers share one request). If a refresh fails
/// while the cached credentials still work, those are returned.
///
/// When AWS refuses credentials as expired or unknown, ``invalidate(_:)`` forgets them (and the
/// provider that gave them) and the next call runs the chain again: the shared files are read
/// again, `credential_process` runs again, the web identity token file is read again. So rotated
/// or renewed credentials are picked up without a restart.
public actor AWSCredentialsChain: AWSCredentialsProvider {
    let providers: [any AWSCredentialsProvider]
    let now: @Sendable () -> Date
    let refreshMargin: TimeInterval
    private var winner: (any AWSCredentialsProvider)?
    private var cached: AWSCredentials?
    private var resolving: Task<AWSCredentials, any Error>?

    public init(
        providers: [any AWSCredentialsProvider], now: @escaping @Sendable () -> Date = Date.init, refreshMargin: Duration = .seconds(300)
    ) {
        self.providers = providers
        self.now = now
        self.refreshMargin = refreshMargin.seconds
    }

    /// The AWS CLI's order, less what onetouch does not support: environment, web identity
    /// (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, or the profile's), the shared files' keys,
    /// the profile's `credential_process`, then the instance role through IMDSv2. `region` (the
    /// provider's) picks the STS endpoint for web identity.
    public static func standard(
        environment: [String: String], transport: any HTTPTransport, region: String? = nil,
        now: @escaping @Sendable () -> Date = Date.init
    ) -> AWSCredentialsChain {
        AWSCredentialsChain(
            providers: [
                EnvironmentCredentialsProvider(environment: environment),
                WebIdentityCredentialsProvider(environment: environment, transport: transport, region: region),
                SharedFileCredentialsProvider(environment: environment),
                ProcessCredentialsProvider(environment: environment),
                InstanceMetadataCredentialsProvider(environment: environment, transport: transport, now: now),
            ], now: now)
    }

    public func credentials() async throws -> AWSCredentials {
        if let cached, !needsRefresh(cached) { return cached }
        let task = resolving ?? Task { try await self.resolve() }
        resolving = task
        do {
            let fresh = try await task.value
            if resolving == task { resolving = nil }
            cached = fresh
            return fresh
        } catch {
            if resolving == task { resolving = nil }
            if let cached, let expiration = cached.expiration, now() < expiration { return cached }
            throw error
        }
    }

    public func invalidate(_ used: AWSCredentials) async {
        // Others may have read fresh ones meanwhile: forget only what AWS refused.
        guard cached == nil || cached == used else { return }
        cached = nil
        let provider = winner
        winner = nil
        await provider?.invalidate(used)
    }

    private func needsRefresh(_ credentials: AWSCredentials) -> Bool {
        guard let expiration = credentials.expiration else { return false }
        return now() >= expiration.addingTimeInterval(-refreshMargin)
    }

    private func resolve() async throws -> AWSCredentials {
        if let winner { return try await winner.credentials() }
        var reasons: [String] = []
        for provider in providers {
            do {
                let credentials = try await provider.credentials()
                winner = provider
                return credentials
            } catch AWSCredentialsError.notConfigured(let source, let reason) {
                reasons.append("\(source): \(reason)")
            }
        }
        throw AWSCredentialsError.noCredentials(reasons: reasons)
    }
}
