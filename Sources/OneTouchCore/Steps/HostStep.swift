import Foundation
import Logging

/// Everything a step may use. Passed in, never global.
public struct StepServices: Sendable {
    public var cloud: any CloudProvider
    public var directory: any Directory
    public var notifier: any Notifier
    public var store: Store
    public var secrets: SecretBox
    public var renderer: UserDataRenderer
    public var logger: Logger
    /// Where one-time passwords come from: the system CSPRNG, except in tests that plant a canary.
    public var oneTimePasswords: @Sendable () -> Secret = SecretBox.oneTimePassword
    /// Step durations, for `/metrics`.
    public var telemetry = Telemetry()

    public init(
        cloud: any CloudProvider, directory: any Directory, notifier: any Notifier, store: Store, secrets: SecretBox,
        renderer: UserDataRenderer, logger: Logger
    ) {
        self.cloud = cloud
        self.directory = directory
        self.notifier = notifier
        self.store = store
        self.secrets = secrets
        self.renderer = renderer
        self.logger = logger
    }
}

/// One attempt's view of its host.
public struct StepContext: Sendable {
    public var host: HostRecord
    public var spec: HostSpec
    public var facts: HostFacts
    public var attempt: AttemptRecord
    public var now: Date
    public var services: StepServices
    /// False only for the first attempt of this step in this generation, begun by this process: then
    /// nothing can exist yet from an earlier try, and look-ups for leftovers can be skipped.
    public var mayHaveRunBefore: Bool = true

    public var hostID: String { host.id }
    public var idempotencyKey: String { attempt.idempotencyKey }
    /// Reports of `stage` with an id at or below this are stale.
    public func reportFloor(for stage: ReportRecord.Stage) -> Int64 { facts.reportFloor(for: stage, hostFloor: host.reportFloor) }
    public var directoryHost: DirectoryHost { DirectoryHost(fqdn: spec.fqdn, ipAddress: facts.privateIP) }
    /// Tags for every resource of this host and generation.
    public var tags: [String: String] { Self.tags(host: host, spec: spec, installation: services.store.installationID) }

    /// The tags a host's resources are made with (cloud drift expects them still there).
    public static func tags(host: HostRecord, spec: HostSpec, installation: String) -> [String: String] {
        [
            ManagedTags.hostID: host.id, ManagedTags.managed: "true", ManagedTags.name: spec.fqdn,
            ManagedTags.installation: installation,
            "onetouch:generation": String(host.generation), "onetouch:role": spec.role,
        ]
    }
}

/// What an attempt achieved.
public enum StepOutcome: Sendable, Equatable {
    /// The step's work is done; go on to the next step.
    case done(HostFacts)
    /// A waiting step: the host has not reported yet. Wait for a report or the deadline.
    case wait(HostFacts)
    /// Progress was made but the cloud is not there yet (instance pending): look again after a while,
    /// without spending the retry budget.
    case poll(HostFacts, after: Duration)
    /// This generation's launch key is spent (its instance was terminated): start the next
    /// generation (a new launch key, host token and facts) and run the step again.
    case nextGeneration(reason: String)

    /// The facts the attempt learned, if it says any.
    public var facts: HostFacts? {
        switch self {
        case .done(let facts), .wait(let facts), .poll(let facts, _): facts
        case .nextGeneration: nil
        }
    }
}

/// A small, idempotent unit of work: safe to run again after a crash at any point.
public protocol HostStep: Sendable {
    var step: Step { get }
    func run(_ context: StepContext) async throws -> StepOutcome
}

/// The steps, by name.
public enum Steps {
    public static let all: [Step: any HostStep] = [
        .provision: ProvisionStep(), .preregister: PreregisterStep(), .bootstrap: BootstrapStep(),
        .attachVolume: AttachVolumeStep(), .configPull: ConfigPullStep(), .complete: CompleteStep(),
        .deregister: DeregisterStep(), .terminate: TerminateStep(), .deleteVolume: DeleteVolumeStep(),
    ]
}
