import Foundation

/// A role: what kind of host the application teams ask for.
public struct Role: Sendable, Equatable {
    public var name: String
    public var instanceType: String
    public var volumeGiB: Int
    public var playbook: String

    public init(name: String, instanceType: String, volumeGiB: Int, playbook: String) {
        self.name = name
        self.instanceType = instanceType
        self.volumeGiB = volumeGiB
        self.playbook = playbook
    }
}

/// A credential hosts use to read a private configuration repository: a deploy key (ssh) or a token
/// (https). Delivered through the host API like the one-time password, never in user-data.
public struct RepositoryCredential: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case sshKey = "ssh-key", httpsToken = "https-token" }
    public var kind: Kind
    public var secret: Secret
    public init(kind: Kind, secret: Secret) {
        self.kind = kind
        self.secret = secret
    }
}

/// The whole `serve` configuration, read from one YAML file (see docs/configuration.md).
public struct Configuration: Sendable {
    public var listenHost: String = "127.0.0.1"
    public var listenPort: Int = 8780
    /// The host API on an address of its own (`host_listen`); `listen` then serves the admin API only.
    public var hostListen: (host: String, port: Int)?
    /// PEM files; when given, every listener speaks TLS.
    public var tls: (certificate: String, key: String)?
    /// Plain HTTP on an address other hosts can reach, on purpose (a TLS proxy in front).
    public var allowPlainHTTP = false
    /// `text` (readable) or `json` (one object a line, for log shippers).
    public var logFormat = "text"
    /// The URL hosts call back to (the host API).
    public var publicURL: String
    public var database: String
    public var masterKeyFile: String
    public var adminTokens: SecretSource
    /// DNS domain appended to short host names.
    public var domain: String
    public var concurrency: Int = 32
    public var timeouts: [Step: Duration] = [.bootstrap: .seconds(15 * 60), .configPull: .seconds(45 * 60)]
    public var retry = RetryPolicy()
    public var configRepository: String
    public var configBranch: String = "main"
    public var pullPeriod: Duration = .seconds(30 * 60)
    /// `drift:`: how often `serve` compares the cloud with the configuration (nil: never by itself),
    /// and the age at which a host's report credential is replaced.
    public var cloudDriftEvery: Duration? = .seconds(3600)
    public var reportCredentialMaxAge: Duration = .seconds(30 * 86_400)
    /// Where the credential for a private configuration repository comes from, and its kind.
    public var repositoryCredential: (kind: RepositoryCredential.Kind, source: SecretSource)?
    public var roles: [String: Role]
    /// Adapter sections, read by the adapter modules.
    public var provider: ConfigSection
    public var directory: ConfigSection
    public var notifier: ConfigSection
    public var file: String

    public static let topLevelKeys = [
        "listen", "host_listen", "tls", "allow_plain_http", "log_format", "public_url", "database", "master_key_file", "admin_tokens",
        "domain",
        "concurrency", "timeouts",
        "retry", "config", "roles", "provider", "directory", "notifier", "drift",
    ]

    public static func load(file: String) throws -> Configuration {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ConfigurationError(file: file, path: "", reason: "cannot read the configuration file; check the path")
        }
        return try parse(yaml: String(decoding: data, as: UTF8.self), file: file)
    }

    public static func parse(yaml: String, file: String) throws -> Configuration {
        let root = try ConfigSection.parse(yaml: yaml, file: file)
        try root.rejectUnknownKeys(topLevelKeys)
        let configRepo = try root.requiredSection("config")
        try configRepo.rejectUnknownKeys(["repository", "branch", "pull_period", "credential"])
        var configuration = Configuration(
            publicURL: try root.requiredString("public_url"),
            database: root.resolve(try root.string("database") ?? "onetouch.sqlite"),
            masterKeyFile: root.resolve(try root.string("master_key_file") ?? "master.key"),
            adminTokens: try root.secretSource("admin_tokens") ?? .environment("ONETOUCH_ADMIN_TOKEN"),
            domain: try root.requiredString("domain"),
            configRepository: try configRepo.requiredString("repository"),
            roles: [:],
            provider: try root.requiredSection("provider"),
            directory: try root.requiredSection("directory"),
            notifier: try root.section("notifier") ?? ConfigSection.parse(yaml: "kind: log", file: file),
            file: file)
        guard let url = URL(string: configuration.publicURL), url.scheme == "http" || url.scheme == "https", url.host != nil
        else { throw root.error("public_url", "expected an http:// or https:// URL the hosts can reach") }
        if let listen = try root.string("listen") {
            (configuration.listenHost, configuration.listenPort) = try Self.address(listen, key: "listen", in: root)
        }
        if let listen = try root.string("host_listen") {
            configuration.hostListen = try Self.address(listen, key: "host_listen", in: root)
        }
        if let tls = try root.section("tls") {
            try tls.rejectUnknownKeys(["certificate", "key"])
            guard let certificate = try tls.path("certificate"), let key = try tls.path("key") else {
                throw root.error("tls", "give both `certificate:` and `key:` (PEM files)")
            }
            configuration.tls = (certificate, key)
        }
        configuration.allowPlainHTTP = try root.bool("allow_plain_http") ?? false
        if let format = try root.string("log_format") {
            guard ["text", "json"].contains(format) else { throw root.error("log_format", "expected text or json, got '\(format)'") }
            configuration.logFormat = format
        }
        // Admin and host tokens travel in every request: in clear only on this machine, unless told.
        if configuration.tls == nil && !configuration.allowPlainHTTP {
            for (key, host) in [("listen", configuration.listenHost), ("host_listen", configuration.hostListen?.host)] {
                guard let host, !Self.isLoopback(host) else { continue }
                throw root.error(
                    key,
                    "listening on \(host) without TLS sends admin and host tokens in clear over the network; give `tls: {certificate: FILE, key: FILE}`, or set `allow_plain_http: true` if a TLS proxy is in front"
                )
            }
        }
        configuration.concurrency = try root.int("concurrency", range: 1...10_000) ?? configuration.concurrency
        configuration.configBranch = try configRepo.string("branch") ?? configuration.configBranch
        for (key, value) in [("repository", configuration.configRepository), ("branch", configuration.configBranch)]
        where value.hasPrefix("-") || value.contains(where: { $0.isWhitespace || $0 == "'" || $0 == "\\" }) {
            throw configRepo.error(key, "'\(value)' cannot be handed to git safely: no leading '-', spaces, quotes or backslashes")
        }
        if let credential = try configRepo.section("credential") {
            try credential.rejectUnknownKeys(["kind", "file", "env"])
            let kindText = try credential.requiredString("kind")
            guard let kind = RepositoryCredential.Kind(rawValue: kindText) else {
                throw credential.error(
                    "kind",
                    "expected one of \(RepositoryCredential.Kind.allCases.map(\.rawValue).joined(separator: ", ")), got '\(kindText)'")
            }
            let source: SecretSource
            if let file = try credential.path("file") {
                source = .file(file)
            } else if let env = try credential.string("env") {
                source = .environment(env)
            } else {
                throw credential.error(nil, "give `file:` (a deploy key or token file) or `env:`")
            }
            configuration.repositoryCredential = (kind, source)
        }
        configuration.pullPeriod = try configRepo.duration("pull_period") ?? configuration.pullPeriod
        guard configuration.pullPeriod >= .seconds(60) else {
            throw configRepo.error("pull_period", "must be at least 1m so hosts do not hammer git")
        }
        if let timeouts = try root.section("timeouts") {
            try timeouts.rejectUnknownKeys(["bootstrap", "config_pull"])
            if let t = try timeouts.duration("bootstrap") { configuration.timeouts[.bootstrap] = t }
            if let t = try timeouts.duration("config_pull") { configuration.timeouts[.configPull] = t }
        }
        if let drift = try root.section("drift") {
            try drift.rejectUnknownKeys(["cloud_check_every", "report_credential_max_age"])
            if let every = try drift.duration("cloud_check_every") {
                guard every == .zero || every >= .seconds(60) else {
                    throw drift.error(
                        "cloud_check_every", "must be at least 1m (each look describes every host), or 0s for only `onetouch drift --cloud`"
                    )
                }
                configuration.cloudDriftEvery = every == .zero ? nil : every
            }
            if let age = try drift.duration("report_credential_max_age") {
                guard age >= .seconds(3600) else { throw drift.error("report_credential_max_age", "must be at least 1h") }
                configuration.reportCredentialMaxAge = age
            }
        }
        if let retry = try root.section("retry") {
            try retry.rejectUnknownKeys(["base_delay", "max_delay", "max_attempts", "budget"])
            configuration.retry.baseDelay = try retry.duration("base_delay") ?? configuration.retry.baseDelay
            configuration.retry.maxDelay = try retry.duration("max_delay") ?? configuration.retry.maxDelay
            configuration.retry.maxAttempts = try retry.int("max_attempts", range: 1...1000) ?? configuration.retry.maxAttempts
            configuration.retry.budget = try retry.duration("budget") ?? configuration.retry.budget
        }
        let roles = try root.requiredSection("roles")
        guard !roles.keys.isEmpty else { throw root.error("roles", "define at least one role") }
        for name in roles.keys {
            let role = try roles.requiredSection(name)
            try role.rejectUnknownKeys(["instance_type", "volume_gib", "playbook"])
            let playbook = try role.string("playbook") ?? "\(name).yml"
            guard !playbook.hasPrefix("-"), !playbook.hasPrefix("/"), !playbook.split(separator: "/").contains(".."),
                !playbook.contains(where: { $0.isWhitespace || $0 == "'" || $0 == "\\" || $0 == "$" || $0 == "`" })
            else {
                throw role.error("playbook", "'\(playbook)' must be a plain path inside the configuration repository, e.g. web.yml")
            }
            guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }), !name.hasPrefix("-") else {
                throw roles.error(name, "a role name uses letters, digits, '-' and '_' only")
            }
            configuration.roles[name] = Role(
                name: name, instanceType: try role.requiredString("instance_type"),
                volumeGiB: try role.int("volume_gib", range: 1...16_384) ?? 10, playbook: playbook)
        }
        return configuration
    }

    static func address(_ text: String, key: String, in root: ConfigSection) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port)
        else { throw root.error(key, "expected HOST:PORT, e.g. 127.0.0.1:8780, got '\(text)'") }
        return (String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port)
    }

    /// Addresses only this machine can reach.
    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}
