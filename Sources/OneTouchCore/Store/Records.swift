import Foundation
import GRDB

/// The desired spec of a host, fixed when it is created.
public struct HostSpec: Sendable, Codable, Equatable {
    public var name: String
    public var fqdn: String
    public var role: String
    public var instanceType: String
    public var volumeGiB: Int
    public var playbook: String

    public init(name: String, fqdn: String, role: String, instanceType: String, volumeGiB: Int, playbook: String) {
        self.name = name
        self.fqdn = fqdn
        self.role = role
        self.instanceType = instanceType
        self.volumeGiB = volumeGiB
        self.playbook = playbook
    }
}

/// What the steps learned about a host. Each step reads what earlier steps wrote.
public struct HostFacts: Sendable, Codable, Equatable {
    public var instanceID: String?
    public var privateIP: String?
    public var zone: String?
    public var volumeID: String?
    public var volumeEncrypted: Bool?
    /// The device name the cloud attached the volume as (EC2: `/dev/sdf`, which a Xen guest sees as
    /// `/dev/xvdf`); nil when the guest finds it by its serial only.
    public var volumeDevice: String?
    /// When this record created the data volume, and the encryption key the cloud said it uses: a
    /// volume that vanishes after its creation was rolled back (a key the cloud could not use).
    public var volumeCreatedAt: Date?
    public var volumeKeyID: String?
    /// Bumped by `retry` from a step at or before attach-volume: the volume is requested under a new
    /// idempotency key (the old one may belong to a volume the cloud rolled back).
    public var volumeRound: Int?
    /// The directory key state at pre-registration; enrollment must move away from it.
    public var directoryBaseline: String?
    public var enrolled: Bool?
    /// Set by `retry --from provision|preregister` on a host this record pre-registered before: its
    /// directory entry is ours to replace, even if enrolled.
    public var replaceDirectoryEntry: Bool?
    /// Ids teardown has seen the cloud list: once seen, a resource the cloud stops listing is gone
    /// (rather than not listed yet).
    public var listedAtTeardown: [String]?
    public var readyAnnounced: Bool?
    public var destroyAnnounced: Bool?
    /// Per report stage: reports with an id at or below this are stale (set by resume and retry).
    public var reportFloors: [String: Int64]?

    public init() {}

    /// Reports of `stage` with an id at or below this are stale: the host's floor (a new generation)
    /// or the stage's own (set by resume and retry), whichever is higher.
    public func reportFloor(for stage: ReportRecord.Stage, hostFloor: Int64) -> Int64 {
        max(hostFloor, reportFloors?[stage.rawValue] ?? 0)
    }
}

/// One row of `hosts`.
public struct HostRecord: Sendable, Codable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "hosts"

    public var id: String
    public var name: String
    public var role: String
    public var spec: String
    public var state: HostState.Kind
    public var step: Step?
    public var reason: String?
    public var generation: Int
    public var facts: String
    public var tokenHash: Data?
    public var reportFloor: Int64
    public var keepVolume: Bool
    public var nextAt: Date?
    public var version: Int
    public var createdAt: Date
    public var updatedAt: Date

    enum CodingKeys: String, CodingKey {
        case id, name, role, spec, state, step, reason, generation, facts, version
        case tokenHash = "token_hash"
        case reportFloor = "report_floor"
        case keepVolume = "keep_volume"
        case nextAt = "next_at"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }

    public var hostState: HostState {
        HostState(kind: state, step: step, reason: reason) ?? .failed(step ?? .provision, reason: "corrupt state row")
    }

    public var decodedSpec: HostSpec {
        get throws { try JSON.decoder.decode(HostSpec.self, from: Data(spec.utf8)) }
    }

    /// Reports of `stage` with an id at or below this are stale.
    public func reportFloor(for stage: ReportRecord.Stage) -> Int64 {
        decodedFacts.reportFloor(for: stage, hostFloor: reportFloor)
    }

    /// The facts for display (views, Slack, reconcile): empty if they cannot be read. Whatever acts on
    /// them (the engine, a retry) uses `readFacts()`, which refuses instead.
    public var decodedFacts: HostFacts {
        (try? readFacts()) ?? HostFacts()
    }

    /// The facts, or `UnreadableFacts`: never silently empty, which would make a step forget the VM,
    /// volume or directory entry it already made.
    public func readFacts() throws(UnreadableFacts) -> HostFacts {
        do { return try JSON.decoder.decode(HostFacts.self, from: Data(facts.utf8)) } catch {
            throw UnreadableFacts(hostName: name, detail: "\(error)")
        }
    }
}

/// A host's facts in the database cannot be decoded (a damaged or hand-edited row).
public struct UnreadableFacts: Error, CustomStringConvertible {
    public let hostName: String
    public let detail: String
    public var description: String {
        "what onetouch knows about \(hostName) (its facts in the database) cannot be read (\(detail.prefix(300))); nothing was done, so nothing it made is forgotten"
    }
}

/// One row of `step_attempts`.
public struct AttemptRecord: Sendable, Codable, Equatable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "step_attempts"

    public enum Outcome: String, Sendable, Codable {
        case succeeded, waiting, retrying, failed, paused, abandoned
    }

    public var id: Int64?
    public var hostID: String
    public var step: Step
    public var generation: Int
    public var attempt: Int
    public var idempotencyKey: String
    public var startedAt: Date
    public var finishedAt: Date?
    public var deadline: Date?
    public var outcome: Outcome?
    public var errorClass: ErrorClass?
    public var errorMessage: String?
    public var data: String

    enum CodingKeys: String, CodingKey {
        case id, step, generation, attempt, deadline, outcome, data
        case hostID = "host_id"
        case idempotencyKey = "idempotency_key"
        case startedAt = "started_at"
        case finishedAt = "finished_at"
        case errorClass = "error_class"
        case errorMessage = "error_message"
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// One row of the append-only `events` log.
public struct EventRecord: Sendable, Codable, Equatable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "events"

    public var id: Int64?
    public var hostID: String
    public var at: Date
    public var fromState: String?
    public var toState: String
    public var step: Step?
    public var reason: String
    public var actor: String

    enum CodingKeys: String, CodingKey {
        case id, at, step, reason, actor
        case hostID = "host_id"
        case fromState = "from_state"
        case toState = "to_state"
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// What a host said through the host API.
public struct ReportRecord: Sendable, Codable, Equatable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "reports"

    public enum Stage: String, Sendable, Codable, CaseIterable {
        case booted
        case volumeMounted = "volume-mounted"
        case configured
        case failed
    }

    public var id: Int64?
    public var hostID: String
    public var stage: Stage
    public var exitStatus: Int?
    public var detail: String?
    public var receivedAt: Date
    /// On a `failed` report: the host's own stage that failed.
    public var failedStage: FailedStage?

    /// The stages of the bootstrap script a failure can name.
    public enum FailedStage: String, Sendable, Codable, CaseIterable {
        case packages, enrollment, volume
        case configPull = "config-pull"

        /// How a reason names it.
        public var phrase: String {
            switch self {
            case .packages: "installing the packages the bootstrap needs"
            case .enrollment: "Kerberos enrollment"
            case .volume: "mounting the data volume"
            case .configPull: "the configuration pull (ansible-pull)"
            }
        }
    }

    public init(
        id: Int64?, hostID: String, stage: Stage, exitStatus: Int?, detail: String?, receivedAt: Date,
        failedStage: FailedStage? = nil
    ) {
        self.id = id
        self.hostID = hostID
        self.stage = stage
        self.exitStatus = exitStatus
        self.detail = detail
        self.receivedAt = receivedAt
        self.failedStage = failedStage
    }

    enum CodingKeys: String, CodingKey {
        case id, stage, detail
        case hostID = "host_id"
        case exitStatus = "exit_status"
        case receivedAt = "received_at"
        case failedStage = "failed_stage"
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// A sealed secret row.
public struct SecretRecord: Sendable, Codable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "secrets"

    public enum Kind: String, Sendable, Codable {
        case oneTimePassword = "one-time-password"
        case volumeKey = "volume-key"
    }

    public var hostID: String
    public var kind: Kind
    public var sealed: Data?
    public var createdAt: Date
    public var deliveredAt: Date?
    public var wipedAt: Date?

    enum CodingKeys: String, CodingKey {
        case kind, sealed
        case hostID = "host_id"
        case createdAt = "created_at"
        case deliveredAt = "delivered_at"
        case wipedAt = "wiped_at"
    }
}

extension HostState.Kind: DatabaseValueConvertible {}
extension Step: DatabaseValueConvertible {}
extension ErrorClass: DatabaseValueConvertible {}
extension AttemptRecord.Outcome: DatabaseValueConvertible {}
extension ReportRecord.Stage: DatabaseValueConvertible {}
extension SecretRecord.Kind: DatabaseValueConvertible {}

enum JSON {
    /// One decoder for the records' JSON columns (it holds no state between calls).
    static let decoder = JSONDecoder()

    /// Sorted keys: the same facts are always the same text.
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    static func encode<T: Encodable>(_ value: T) -> String {
        (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "{}"
    }
}
