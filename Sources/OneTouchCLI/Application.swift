import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import OneTouchCore
import OneTouchServer
import OneTouchSlack
import ServiceLifecycle

/// The adapters a configuration asks for.
public struct Adapters: Sendable {
    public var cloud: any CloudProvider
    public var directory: any Directory
    public var notifier: any Notifier
    /// Slack, when `notifier.kind` is `slack`: announced by a service of its own beside the engine.
    public var slack: SlackIntegration?
    public init(cloud: any CloudProvider, directory: any Directory, notifier: any Notifier) {
        self.cloud = cloud
        self.directory = directory
        self.notifier = notifier
    }
}

/// The composition root: builds everything `onetouch serve` runs, from a configuration and adapters.
/// Tests call it too, with fakes and a controlled clock.
public struct OneTouchApplication {
    public let engine: Engine
    public let service: HostService
    public let drift: DriftService
    public let store: Store
    /// What `listen` serves: both APIs, or the admin API alone when the host API has `host_listen`.
    public let router: Router<BasicRequestContext>
    /// The host API on `host_listen`, when configured.
    public let hostRouter: Router<BasicRequestContext>?
    public let configuration: Configuration
    /// Follows the events and tells Slack (nil unless Slack is configured).
    public let announcer: SlackAnnouncer?

    public init(
        configuration: Configuration, adapters: Adapters, environment: [String: String], logger: Logger,
        clock: any EngineClock = SystemClock(), random: any RandomSource = SystemRandom(),
        ids: any IDGenerator = RandomIDGenerator(), owner: String? = nil,
        crashHook: (@Sendable (Step, CrashPoint) throws -> Void)? = nil, metrics: MetricsEndpoint = MetricsEndpoint()
    ) throws {
        // What can be refused is read before anything is written (the database, the master key).
        let (tokens, repositoryCredential) = try Self.loadSecrets(configuration, environment: environment)
        let store = try Store(path: configuration.database, telemetry: metrics.telemetry)
        let secrets = SecretBox(
            masterKey: try SecretBox.loadOrCreateMasterKey(at: configuration.masterKeyFile, mayCreate: try !store.holdsHosts()))
        let renderer = UserDataRenderer(
            publicURL: configuration.publicURL, configRepository: configuration.configRepository,
            configBranch: configuration.configBranch, pullPeriod: configuration.pullPeriod)
        var options = Engine.Options()
        options.concurrency = configuration.concurrency
        options.retry = configuration.retry
        options.timeouts = configuration.timeouts
        options.leaseHolderIsGone = ProcessLease.holderIsGone
        let cloud = BatchingCloud(
            MeasuredCloud(adapters.cloud, adapter: try configuration.provider.requiredString("kind"), telemetry: metrics.telemetry))
        let directory = MeasuredDirectory(
            adapters.directory, adapter: try configuration.directory.requiredString("kind"), telemetry: metrics.telemetry)
        var services = StepServices(
            cloud: cloud, directory: directory, notifier: adapters.notifier, store: store,
            secrets: secrets, renderer: renderer, logger: logger)
        services.telemetry = metrics.telemetry
        let engine = Engine(
            services: services, options: options, clock: clock, random: random,
            owner: owner ?? ProcessLease.owner, crashHook: crashHook)
        let service = HostService(
            store: store, secrets: secrets, renderer: renderer, roles: configuration.roles, domain: configuration.domain,
            directory: directory, clock: clock, ids: ids, logger: logger,
            repositoryCredential: repositoryCredential, wake: { await engine.wake($0, underWay: $1) })
        var driftOptions = DriftService.Options()
        driftOptions.pullPeriod = configuration.pullPeriod
        driftOptions.cloudCheck = configuration.cloudDriftEvery
        driftOptions.credentialMaxAge = configuration.reportCredentialMaxAge
        let drift = DriftService(
            store: store, hosts: service, cloud: cloud, notifier: adapters.notifier, clock: clock, logger: logger, options: driftOptions)
        self.drift = drift
        metrics.attach(store: store, engine: engine)
        self.engine = engine
        self.service = service
        self.store = store
        self.configuration = configuration
        let reconciler = Reconciler(store: store, cloud: cloud)
        let split = configuration.hostListen != nil
        self.router = OneTouchServer.router(
            service: service, reconciler: reconciler, adminTokens: tokens, serving: split ? .admin : .both,
            readiness: ReadinessProbe(store: store, engine: engine, clock: clock), metrics: { try await metrics.scrape() },
            secureCookies: configuration.tls != nil, drift: drift)
        self.hostRouter =
            split
            ? OneTouchServer.router(service: service, reconciler: reconciler, adminTokens: tokens, serving: .host, drift: drift) : nil
        self.announcer = try Self.wireSlack(
            adapters.slack, router: router, service: service, configuration: configuration,
            adminTokens: tokens, clock: clock, owner: owner ?? ProcessLease.owner, logger: logger)
    }

    /// The admin tokens and the repository credential the configuration names; a problem is reported
    /// under the key that names the source.
    static func loadSecrets(_ configuration: Configuration, environment: [String: String]) throws -> (
        [AdminToken], RepositoryCredential?
    ) {
        let tokens = try adminTokens(configuration.adminTokens, configFile: configuration.file, environment: environment)
        let repositoryCredential = try configuration.repositoryCredential.map { credential in
            do {
                return RepositoryCredential(kind: credential.kind, secret: try credential.source.load(environment: environment))
            } catch let error as ConfigurationError {
                throw ConfigurationError(file: configuration.file, path: "config.credential", reason: error.reason)
            }
        }
        return (tokens, repositoryCredential)
    }

    /// Admin tokens as `AdminTokens` reads them (the CLI reads its token the same way); a problem is
    /// reported under `admin_tokens`.
    static func adminTokens(_ source: SecretSource, configFile: String, environment: [String: String]) throws -> [AdminToken] {
        let tokens: [AdminTokens.Entry]
        do { tokens = try AdminTokens.load(source, environment: environment) } catch {
            throw ConfigurationError(file: configFile, path: "admin_tokens", reason: "\(error)")
        }
        guard tokens.allSatisfy({ $0.token.reveal().count >= 16 }) else {
            throw ConfigurationError(
                file: configFile, path: "admin_tokens",
                reason: "admin tokens must be at least 16 characters; generate one with `openssl rand -hex 32`")
        }
        return tokens.map { AdminToken(name: $0.name, token: $0.token) }
    }

    /// Runs the engine and the HTTP listeners as services until SIGTERM or SIGINT.
    public func run(logger: Logger) async throws {
        let server = try Self.serverBuilder(configuration)
        var listeners: [any Service] = [
            Application(
                router: router, server: server,
                configuration: .init(address: .hostname(configuration.listenHost, port: configuration.listenPort), serverName: "onetouch"),
                logger: logger)
        ]
        if let hostRouter, let address = configuration.hostListen {
            listeners.append(
                Application(
                    router: hostRouter, server: server,
                    configuration: .init(address: .hostname(address.host, port: address.port), serverName: "onetouch"), logger: logger))
        }
        let group = ServiceGroup(
            configuration: .init(
                services: ([engine, DriftWatcher(drift)] + listeners + (announcer.map { [$0] } ?? [])).map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }

    /// HTTP/1.1, over TLS when `tls` names a certificate and key (PEM). A file that cannot be read or
    /// parsed is reported under `tls`.
    static func serverBuilder(_ configuration: Configuration) throws -> HTTPServerBuilder {
        guard let tls = configuration.tls else { return .http1() }
        do {
            let certificates = try NIOSSLCertificate.fromPEMFile(tls.certificate)
            guard !certificates.isEmpty else { throw ConfigurationError(file: configuration.file, path: "tls", reason: "no certificate") }
            let key = try NIOSSLPrivateKey(file: tls.key, format: .pem)
            return try .tls(
                .http1(),
                tlsConfiguration: .makeServerConfiguration(
                    certificateChain: certificates.map { .certificate($0) }, privateKey: .privateKey(key)))
        } catch {
            throw ConfigurationError(
                file: configuration.file, path: "tls",
                reason:
                    "cannot use \(tls.certificate) and \(tls.key) as a PEM certificate chain and its private key (\(error)); check both files"
            )
        }
    }
}

/// Lease owners are "HOST pid PID": a restart on the same machine takes over the lease of a process
/// that no longer exists instead of waiting for it to expire.
enum ProcessLease {
    static var owner: String { "\(ProcessInfo.processInfo.hostName) pid \(ProcessInfo.processInfo.processIdentifier)" }

    /// Whether the holder of an unexpired lease row is gone. While this process holds the serve lock,
    /// no other process can be driving the database, so any other holder is gone.
    @Sendable static func holderIsGone(_ holder: String) -> Bool {
        if ServeLock.isHeldByThisProcess { return true }
        let parts = holder.components(separatedBy: " pid ")
        guard parts.count == 2, parts[0] == ProcessInfo.processInfo.hostName, let pid = Int32(parts[1]) else { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }
}
