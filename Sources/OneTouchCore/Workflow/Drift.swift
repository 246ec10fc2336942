import Foundation

/// Where a ready host's configuration stands, from the runs it reports.
public enum DriftState: String, Sendable, Codable, CaseIterable {
    /// The last run changed nothing and failed nothing.
    case inSync = "in-sync"
    /// The last run changed something: drift found and put right (which tasks is kept).
    case corrected
    /// Runs fail: drift that does not correct itself.
    case failing
    /// No report within two pull periods plus the host's splay.
    case silent

    /// States a person is told about when a host enters them.
    public var isProblem: Bool { self == .failing || self == .silent }

    /// What a person does about a host in this state (nil: nothing to do).
    public var advice: String? {
        switch self {
        case .failing: "read the failed task in `onetouch drift` and the host's journal (onetouch-pull.service)"
        case .silent: "is the host up, and its onetouch-pull.timer enabled?"
        case .inSync, .corrected: nil
        }
    }
}

/// What a host's configuration run reports (`POST /v1/hosts/ID/runs`): built on the host from
/// ansible-pull's exit status and the summary the bootstrap's callback plugin writes at the play recap.
public struct ConfigRunReport: Sendable, Codable, Equatable {
    /// The play recap, summed over the run's hosts (normally just localhost).
    public struct Recap: Sendable, Codable, Equatable {
        public var ok: Int
        public var changed: Int
        public var unreachable: Int
        public var failed: Int
        public var skipped: Int
        public init(ok: Int = 0, changed: Int = 0, unreachable: Int = 0, failed: Int = 0, skipped: Int = 0) {
            self.ok = ok
            self.changed = changed
            self.unreachable = unreachable
            self.failed = failed
            self.skipped = skipped
        }
    }

    public struct FailedTask: Sendable, Codable, Equatable {
        public var task: String
        public var message: String
        public init(task: String, message: String) {
            self.task = task
            self.message = message
        }
    }

    /// The configuration commit the run checked out (40 hex digits), when it got that far.
    public var commit: String?
    public var started: Date?
    public var durationSeconds: Double?
    /// ansible-pull's exit status. Alone it is ambiguous (2: a failed task or a failed checkout; 4: an
    /// unreachable host or a playbook that does not parse), so the recap decides where there is one.
    public var exitStatus: Int
    /// `--check --diff`: nothing was changed; `changedTasks` would have changed.
    public var checkMode: Bool
    /// nil: the playbook never reached its recap (checkout failed, parse error, missing playbook).
    public var recap: Recap?
    public var changedTasks: [String]
    public var failedTasks: [FailedTask]
    /// The end of the run's output, sent when it failed.
    public var outputTail: String?

    public init(
        commit: String? = nil, started: Date? = nil, durationSeconds: Double? = nil, exitStatus: Int, checkMode: Bool = false,
        recap: Recap? = nil, changedTasks: [String] = [], failedTasks: [FailedTask] = [], outputTail: String? = nil
    ) {
        self.commit = commit
        self.started = started
        self.durationSeconds = durationSeconds
        self.exitStatus = exitStatus
        self.checkMode = checkMode
        self.recap = recap
        self.changedTasks = changedTasks
        self.failedTasks = failedTasks
        self.outputTail = outputTail
    }

    enum CodingKeys: String, CodingKey {
        case commit, started, durationSeconds, exitStatus, checkMode, recap, changedTasks, failedTasks, outputTail
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        commit = try c.decodeIfPresent(String.self, forKey: .commit)
        started = try c.decodeIfPresent(Date.self, forKey: .started)
        durationSeconds = try c.decodeIfPresent(Double.self, forKey: .durationSeconds)
        exitStatus = try c.decode(Int.self, forKey: .exitStatus)
        checkMode = try c.decodeIfPresent(Bool.self, forKey: .checkMode) ?? false
        recap = try c.decodeIfPresent(Recap.self, forKey: .recap)
        changedTasks = try c.decodeIfPresent([String].self, forKey: .changedTasks) ?? []
        failedTasks = try c.decodeIfPresent([FailedTask].self, forKey: .failedTasks) ?? []
        outputTail = try c.decodeIfPresent(String.self, forKey: .outputTail)
    }

    public static let maxOutputTail = 16 * 1024
    public static let maxTasks = 200
    public static let maxTaskText = 1024

    /// Why this report cannot be recorded, or nil. Checked before anything is written.
    public func problem() -> String? {
        if let commit, commit.count < 7 || commit.count > 64 || !commit.allSatisfy(\.isHexDigit) {
            return "commit must be 7 to 64 hex digits (git rev-parse HEAD of the checkout)"
        }
        if !(0...255).contains(exitStatus) { return "exitStatus \(exitStatus) is not an exit status (0 to 255)" }
        if let durationSeconds, !(0...(7 * 86_400)).contains(durationSeconds) {
            return "durationSeconds \(durationSeconds) is out of range (0 to 604800)"
        }
        if let recap,
            [recap.ok, recap.changed, recap.unreachable, recap.failed, recap.skipped].contains(where: { !(0...1_000_000).contains($0) })
        {
            return "recap counts must be 0 to 1000000"
        }
        if changedTasks.count > Self.maxTasks || failedTasks.count > Self.maxTasks {
            return "at most \(Self.maxTasks) changed and \(Self.maxTasks) failed tasks per report"
        }
        let texts = changedTasks + failedTasks.flatMap { [$0.task, $0.message] }
        if texts.contains(where: { $0.utf8.count > Self.maxTaskText }) {
            return "a task name or message is over \(Self.maxTaskText) bytes"
        }
        if let outputTail, outputTail.utf8.count > Self.maxOutputTail {
            return "outputTail is \(outputTail.utf8.count) bytes; send at most the last \(Self.maxOutputTail)"
        }
        return nil
    }

    /// The state an applied run leaves its host in. A recap with failed or unreachable tasks, or a
    /// run that never reached its recap and did not exit 0, is `failing`; a run without a recap that
    /// exited 0 (a callback that could not write) counts by its exit status alone.
    public var outcome: DriftState {
        if let recap {
            if recap.failed > 0 || recap.unreachable > 0 || exitStatus != 0 { return .failing }
            return recap.changed > 0 ? .corrected : .inSync
        }
        return exitStatus == 0 ? .inSync : .failing
    }
}

/// The drift decisions, without I/O: what a report or the passing of time does to a host's state,
/// and whether people hear about it.
public enum Drift {
    /// A host's drift record as the decisions read it.
    public struct Record: Sendable, Equatable {
        public var state: DriftState?
        public var runState: DriftState?
        /// The last announcement was `failing` or `silent`.
        public var problem: Bool
        public var lastReportAt: Date
        public init(state: DriftState?, runState: DriftState?, problem: Bool, lastReportAt: Date) {
            self.state = state
            self.runState = runState
            self.problem = problem
            self.lastReportAt = lastReportAt
        }
    }

    /// The record after a change of state, and whether the change is announced: entering `failing` or
    /// `silent`, and reaching `in-sync` after one of those, once each; never once per run.
    public static func moving(_ record: Record, to state: DriftState?) -> (record: Record, announce: Bool) {
        var next = record
        next.state = state
        guard let state, state != record.state else { return (next, false) }
        if state.isProblem {
            next.problem = true
            return (next, true)
        }
        if state == .inSync && record.problem {
            next.problem = false
            return (next, true)
        }
        return (next, false)
    }

    /// A report received `now`: an applied run sets the state from its outcome; a check run changes
    /// nothing but ends a silence (the host is there).
    public static func reported(_ record: Record, run: ConfigRunReport, now: Date) -> (record: Record, announce: Bool) {
        var record = record
        record.lastReportAt = now
        if !run.checkMode { record.runState = run.outcome }
        return moving(record, to: record.runState)
    }

    /// When a host that reported last at `lastReport` is silent: two pull periods plus its splay.
    public static func silentAfter(_ lastReport: Date, period: Duration, splaySeconds: Int) -> Date {
        lastReport.addingTimeInterval(2 * Double(period.components.seconds) + Double(splaySeconds))
    }

    /// The words of a transition's event (and of its announcement).
    public static func eventReason(_ name: String, to state: DriftState, run: ConfigRunReport?, period: Duration) -> String {
        switch state {
        case .failing:
            let task = run?.failedTasks.first.map { ": task '\($0.task)' failed: \($0.message)" } ?? ""
            let code = run.map { " (ansible-pull exited \($0.exitStatus))" } ?? ""
            return
                "configuration drift: \(name) is failing its configuration runs\(code)\(task); \(DriftState.failing.advice ?? "")"
        case .silent:
            return
                "configuration drift: \(name) is silent: no configuration run reported in two pull periods (\(StatusPage.duration(2 * Double(period.components.seconds)))) plus its splay; \(DriftState.silent.advice ?? "")"
        case .inSync:
            return "configuration drift: \(name) is in sync again"
        case .corrected:
            return "configuration drift: \(name) corrected drift"
        }
    }
}

// MARK: - Cloud drift

/// What the configuration and a host's role declare of its cloud resources.
public struct CloudDeclaration: Sendable, Equatable {
    public var instanceType: String
    /// nil: the configuration does not say (not compared).
    public var securityGroupIDs: [String]?
    public var subnetID: String?
    public var metadataTokensRequired: Bool = true
    /// Tags the instance must carry, with their values.
    public var tags: [String: String]
    /// nil: not compared (the cloud has no such thing); a key id of nil: any key.
    public var rootVolumeEncrypted: Bool?
    public var rootVolumeKeyID: String?
    public var dataVolumeKeyID: String?

    public init(
        instanceType: String, securityGroupIDs: [String]? = nil, subnetID: String? = nil, tags: [String: String] = [:],
        rootVolumeEncrypted: Bool? = nil, rootVolumeKeyID: String? = nil, dataVolumeKeyID: String? = nil
    ) {
        self.instanceType = instanceType
        self.securityGroupIDs = securityGroupIDs
        self.subnetID = subnetID
        self.tags = tags
        self.rootVolumeEncrypted = rootVolumeEncrypted
        self.rootVolumeKeyID = rootVolumeKeyID
        self.dataVolumeKeyID = dataVolumeKeyID
    }
}

/// One way a live host's cloud resources differ from what is declared.
public struct CloudDifference: Sendable, Codable, Equatable, Hashable {
    /// What differs, e.g. `instance type`, `security groups`, `tag Name`.
    public var field: String
    public var expected: String
    public var actual: String
    public init(field: String, expected: String, actual: String) {
        self.field = field
        self.expected = expected
        self.actual = actual
    }
}

public enum CloudDrift {
    /// The differences between what is declared and what the cloud shows, in a stable order.
    /// `instance` nil: the instance is gone; `rootVolume`/`dataVolume` nil: not found.
    public static func differences(
        declared: CloudDeclaration, instance: Instance?, rootVolume: Volume?, dataVolumeID: String?, dataVolume: Volume?
    ) -> [CloudDifference] {
        guard let instance, instance.state != .terminated else {
            return [CloudDifference(field: "instance", expected: "running", actual: instance == nil ? "not found" : "terminated")]
        }
        var found: [CloudDifference] = []
        func check(_ field: String, _ expected: String, _ actual: String) {
            if expected != actual { found.append(CloudDifference(field: field, expected: expected, actual: actual)) }
        }
        check("instance state", Instance.State.running.rawValue, instance.state.rawValue)
        if let type = instance.instanceType { check("instance type", declared.instanceType, type) }
        if let groups = declared.securityGroupIDs, let actual = instance.securityGroupIDs {
            check("security groups", groups.sorted().joined(separator: ","), actual.sorted().joined(separator: ","))
        }
        if let subnet = declared.subnetID, let actual = instance.subnetID { check("subnet", subnet, actual) }
        if declared.metadataTokensRequired {
            check("IMDSv2 required", "true", String(instance.metadataTokensRequired))
        }
        for (key, value) in declared.tags.sorted(by: { $0.key < $1.key }) {
            check("tag \(key)", value, instance.tags[key] ?? "(missing)")
        }
        if let encrypted = declared.rootVolumeEncrypted, let root = instance.rootVolumeID {
            if let volume = rootVolume {
                check("root volume encrypted", String(encrypted), String(volume.encrypted))
                if let key = declared.rootVolumeKeyID, key.hasPrefix("arn:"), volume.encrypted {
                    check("root volume key", key, volume.keyID ?? "(none)")
                }
            } else {
                check("root volume", root, "not found")
            }
        }
        if let dataVolumeID {
            if let volume = dataVolume {
                check("data volume attached to", instance.id, volume.attachedTo ?? "(nothing)")
                check("data volume encrypted", "true", String(volume.encrypted))
                if let key = declared.dataVolumeKeyID, key.hasPrefix("arn:"), volume.encrypted {
                    check("data volume key", key, volume.keyID ?? "(none)")
                }
            } else {
                check("data volume", dataVolumeID, "not found")
            }
        }
        return found
    }
}
