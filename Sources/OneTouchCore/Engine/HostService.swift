import Foundation
import Logging

/// An admin or host request that cannot be done, with what to do instead.
public struct ServiceError: Error, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable { case invalid, notFound, conflict, unauthorized, forbidden, gone, tooManyRequests }
    public var kind: Kind
    public var message: String
    public var description: String { message }
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
}

/// What the admin API and the host API do, without HTTP. The workflow decides every transition;
/// this records what people and hosts said and wakes the engine.
public final class HostService: Sendable {
    public let store: Store
    private let secrets: SecretBox
    private let renderer: UserDataRenderer
    private let roles: [String: Role]
    private let domain: String
    private let directory: any Directory
    private let clock: any EngineClock
    private let ids: any IDGenerator
    /// What hosts use to read a private configuration repository, if it needs one.
    private let repositoryCredential: RepositoryCredential?
    /// Asks the engine to look at a host now; says whether the host is under way (not `pending`).
    private let wake: @Sendable (_ hostID: String, _ underWay: Bool) async -> Void
    private let logger: Logger

    public init(
        store: Store, secrets: SecretBox, renderer: UserDataRenderer, roles: [String: Role], domain: String,
        directory: any Directory, clock: any EngineClock, ids: any IDGenerator, logger: Logger,
        repositoryCredential: RepositoryCredential? = nil,
        wake: @escaping @Sendable (_ hostID: String, _ underWay: Bool) async -> Void
    ) {
        self.repositoryCredential = repositoryCredential
        self.store = store
        self.secrets = secrets
        self.renderer = renderer
        self.roles = roles
        self.domain = domain
        self.directory = directory
        self.clock = clock
        self.ids = ids
        self.logger = logger
        self.wake = wake
    }

    // MARK: Admin

    public struct CreateRequest: Sendable, Codable, Equatable {
        public var name: String
        public var role: String
        public var size: String?
        public var volumeGiB: Int?
        public init(name: String, role: String, size: String? = nil, volumeGiB: Int? = nil) {
            self.name = name
            self.role = role
            self.size = size
            self.volumeGiB = volumeGiB
        }
    }

    /// Validates and records a new host, then wakes the engine. Nothing happens on bad input.
    public func create(_ request: CreateRequest, actor: String) async throws -> HostRecord {
        let name: String
        let fqdn: String
        do {
            name = try HostName.validate(request.name)
            fqdn = try HostName.fqdn(name, domain: domain)
        } catch { throw ServiceError(.invalid, error.description) }
        // 64: FreeIPA's ipaMaxHostnameLength and ipa-client-install's limit, Linux's HOST_NAME_MAX.
        guard fqdn.count <= 64 else {
            throw ServiceError(.invalid, "the host name \(fqdn) has \(fqdn.count) characters; at most 64 are allowed (give a shorter name)")
        }
        guard let role = roles[request.role] else {
            throw ServiceError(
                .invalid, "unknown role '\(request.role)'; known roles: \(roles.keys.sorted().joined(separator: ", "))")
        }
        if let size = request.size, size.isEmpty || size.contains(where: { $0.isWhitespace || $0 == "'" }) {
            throw ServiceError(.invalid, "invalid size '\(size)'; give an instance type such as t3.small")
        }
        if let gib = request.volumeGiB, !(1...16_384).contains(gib) {
            throw ServiceError(.invalid, "volume size \(gib) GiB is out of range; give 1 to 16384")
        }
        let spec = HostSpec(
            name: name, fqdn: fqdn, role: role.name,
            instanceType: request.size ?? role.instanceType, volumeGiB: request.volumeGiB ?? role.volumeGiB,
            playbook: role.playbook)
        let id = ids.hostID()
        let token = secrets.hostToken(hostID: id, generation: 1)
        do {
            let host = try await store.createHost(
                id: id, spec: spec, tokenHash: SecretBox.tokenHash(token), now: clock.now, actor: actor)
            logger.info("Host created", metadata: ["host.id": "\(id)", "host.name": "\(name)", "actor": "\(actor)"])
            await wake(id, false)
            return host
        } catch let error as HostNameTaken {
            throw ServiceError(.conflict, error.description)
        }
    }

    public func host(named name: String) throws -> HostRecord {
        guard let host = try store.host(named: name) else { throw ServiceError(.notFound, UnknownHost(name: name).description) }
        return host
    }

    /// Continues a failed or paused host from the step where it stopped.
    public func resume(_ name: String, actor: String) async throws -> HostRecord {
        try await onLatest(name) { host in try await self.resume(host, actor: actor) }
    }

    private func resume(_ host: HostRecord, actor: String) async throws -> HostRecord {
        let name = host.name
        guard case .failed(let step, _) = host.hostState, true else {
            if case .paused = host.hostState { return try await move(host, .resume, actor: actor) }
            throw ServiceError(.conflict, "\(name) is \(host.hostState), not failed or paused: nothing to resume")
        }
        if try otpLost(host, step: step) {
            return try await move(
                host, .retry(from: .preregister), actor: actor,
                note: "its one-time password was wiped before the host fetched it, so it is issued again")
        }
        return try await move(host, .resume, actor: actor)
    }

    /// Resumes every failed host; returns those resumed.
    public func resumeAllFailed(actor: String) async throws -> [HostRecord] {
        var resumed: [HostRecord] = []
        for host in try store.hosts(state: .failed) {
            resumed.append(try await resume(host.name, actor: actor))
        }
        return resumed
    }

    /// Runs again from `step` (at or before where the host stopped; any step for a ready host).
    public func retry(_ name: String, from step: Step, actor: String) async throws -> HostRecord {
        try await onLatest(name) { host in try await self.retry(host, from: step, actor: actor) }
    }

    private func retry(_ host: HostRecord, from step: Step, actor: String) async throws -> HostRecord {
        let name = host.name
        guard !step.isTeardown else {
            throw ServiceError(.invalid, "\(step.rawValue) is a teardown step; use `onetouch destroy \(name)`")
        }
        if host.hostState == .ready && step != .provision {
            throw ServiceError(
                .conflict,
                "\(name) is ready, and a ready host's machine no longer talks to onetouch (its token closed at ready), so it cannot run \(step.rawValue) again. It pulls its configuration from git every \(Int(renderer.pullPeriod.seconds) / 60) minutes: fix the configuration there, or run `onetouch retry \(name) --from provision` for a new machine"
            )
        }
        if step > .preregister, let current = host.hostState.step, try otpLost(host, step: current) {
            return try await move(
                host, .retry(from: .preregister), actor: actor,
                note: "its one-time password was wiped before the host fetched it, so it is issued again")
        }
        return try await move(host, .retry(from: step), actor: actor)
    }

    public func destroy(_ name: String, keepVolume: Bool, actor: String) async throws -> HostRecord {
        try await onLatest(name) { host in try await self.move(host, .destroy, actor: actor, keepVolume: keepVolume) }
    }

    /// Runs an operator's command on the host's latest row. The engine writes the row after every
    /// step and every poll, so a command can lose the race between its read and its write; it then
    /// decides again on what the engine wrote, as the operator would have had they looked a moment
    /// later. Only a host that keeps changing under every try is a conflict.
    package func onLatest(
        _ name: String, tries: Int = 8, _ command: (HostRecord) async throws -> HostRecord
    ) async throws -> HostRecord {
        for _ in 0..<tries {
            do { return try await command(try host(named: name)) } catch is HostChanged { await Task.yield() }
        }
        throw ServiceError(.conflict, "\(name) changed under each of \(tries) tries; look at `onetouch status \(name)` and try again")
    }

    /// One host as `onetouch status` shows it. A host that failed on its own report carries the log
    /// tail it sent (its latest `failed` report since the last retry).
    public func status(named name: String) throws -> HostView {
        let host = try host(named: name)
        guard host.hostState.kind == .failed else { return HostView(host, drift: try store.driftStates(hostID: host.id)[host.id]) }
        let report = try store.latestReport(hostID: host.id, stage: .failed, after: host.reportFloor(for: .failed))
        return HostView(host, failureLog: report?.detail)
    }

    /// The user-data the host gets, with its token redacted.
    public func renderUserData(_ name: String) throws -> String {
        let host = try host(named: name)
        return try renderer.render(hostID: host.id, generation: host.generation, spec: try host.decodedSpec, token: nil)
    }

    private func otpLost(_ host: HostRecord, step: Step) throws -> Bool {
        guard step > .preregister, step <= .configPull else { return false }
        let otp = try store.secret(hostID: host.id, kind: .oneTimePassword)
        return otp?.wipedAt != nil && otp?.deliveredAt == nil
    }

    private func move(
        _ host: HostRecord, _ input: HostWorkflow.Input, actor: String, keepVolume: Bool? = nil, note: String? = nil
    ) async throws -> HostRecord {
        var workflow = HostWorkflow(state: host.hostState)
        let effects: HostWorkflow.Effects
        do { effects = try workflow.apply(input) } catch {
            throw ServiceError(.conflict, "\(host.name): \(error.description)")
        }
        var update = Store.HostUpdate()
        update.state = workflow.state
        update.actor = actor
        update.eventReason = [input.verb + " requested", note].compactMap { $0 }.joined(separator: "; ")
        update.nextAt = .some(clock.now)
        update.keepVolume = keepVolume
        // What the move calls for, as the workflow says.
        update.carryOut(effects)
        // Unreadable facts stop a move that needs them. A new generation needs none, and teardown finds
        // what the host made through its ledger, tags and launch keys.
        var facts: HostFacts
        do { facts = try host.readFacts() } catch {
            guard effects.startNextGeneration || effects.revokeHostToken else {
                throw ServiceError(
                    .conflict,
                    "\(error.description); `onetouch retry \(host.name) --from provision` (a new machine) or `onetouch destroy \(host.name)` can go on"
                )
            }
            logger.warning("Unreadable facts replaced", metadata: ["host.id": "\(host.id)", "command": "\(input.verb)"])
            facts = HostFacts()
        }
        let latest = try store.latestReportID(hostID: host.id)
        let madeDirectoryEntry = try !store.resources(hostID: host.id, kind: .directoryEntry).isEmpty
        let ownsDirectoryEntry = facts.directoryBaseline != nil || facts.replaceDirectoryEntry == true || madeDirectoryEntry
        if effects.startNextGeneration {
            update.startNextGeneration(of: host, secrets: secrets, latestReportID: latest)
            facts = HostFacts()
        }
        if effects.preregisterAgain {
            if ownsDirectoryEntry { facts.replaceDirectoryEntry = true }
            facts.directoryBaseline = nil
        }
        if effects.requestVolumeAgain {
            facts.volumeID = nil
            facts.volumeRound = (facts.volumeRound ?? 1) + 1
        }
        if effects.verifyAgain {
            facts.enrolled = nil
            facts.readyAnnounced = nil
        }
        var floors = facts.reportFloors ?? [:]
        for stage in effects.staleReports { floors[stage.rawValue] = latest }
        facts.reportFloors = floors
        update.facts = facts
        // A `HostChanged` here goes back to `onLatest`, which decides again on the new row.
        let updated = try await store.update(host, update, now: clock.now)
        logger.info(
            "Host command",
            metadata: ["host.id": "\(host.id)", "command": "\(input.verb)", "actor": "\(actor)", "state": "\(workflow.state)"])
        await wake(host.id, updated.hostState != .pending)
        return updated
    }

    // MARK: Host API

    /// The first machine that presents a boot secret (`claim`) with this generation's token is the
    /// host: every later host API call must present the same one. Another machine that holds the token
    /// (anyone who can read the user-data) is refused, and the host is paused, so a person looks.
    public func checkClaim(hostID: String, token: String, claim: String?, what: String) async throws {
        let host = try authenticate(hostID: hostID, token: token)
        guard let claim, (16...200).contains(claim.utf8.count), claim.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
            throw ServiceError(
                .invalid,
                "no boot secret: every host API call carries the header X-OneTouch-Claim (16 to 200 visible characters) that the bootstrap script makes at first boot"
            )
        }
        switch try await store.bindClaim(hostID: hostID, generation: host.generation, claim: Secret(claim)) {
        case .bound:
            logger.info("Host claimed by its machine", metadata: ["host.id": "\(hostID)", "generation": "\(host.generation)"])
        case .matches:
            return
        case .other:
            logger.warning("A second machine claims the host", metadata: ["host.id": "\(hostID)", "call": "\(what)"])
            let spec = try host.decodedSpec
            let reason =
                "two machines claim this host: one that is not the first presented the host's token with another boot secret (\(what)); the one-time password and the volume go only to the first. Whoever can read this instance's user-data has its token: look at the instance, then run `onetouch retry \(spec.name) --from provision` for a new machine and token"
            // Paused on the latest row, like an operator's command, so the engine writing it at the
            // same moment cannot make the pause be lost.
            do {
                _ = try await onLatest(spec.name) { latest in
                    var workflow = HostWorkflow(state: latest.hostState)
                    guard latest.id == hostID, latest.generation == host.generation,
                        (try? workflow.apply(.needsHuman(reason: reason))) != nil
                    else { return latest }
                    var update = Store.HostUpdate()
                    update.state = workflow.state
                    update.actor = "host-api"
                    update.eventReason = reason
                    update.nextAt = .some(nil)
                    return try await store.update(latest, update, now: clock.now)
                }
            } catch {
                logger.error("Could not pause the host a second machine claims", metadata: ["host.id": "\(hostID)", "error": "\(error)"])
            }
            throw ServiceError(.forbidden, "this host was claimed by another machine; this one gets nothing")
        }
    }

    /// The host a token belongs to; throws `unauthorized` for an unknown host, a wrong or revoked token.
    public func authenticate(hostID: String, token: String) throws -> HostRecord {
        guard let host = try store.host(id: hostID), let hash = host.tokenHash, SecretBox.tokenMatches(token, hash: hash)
        else { throw ServiceError(.unauthorized, "unknown host or invalid token") }
        return host
    }

    public struct Report: Sendable, Codable, Equatable {
        public var stage: ReportRecord.Stage
        public var exitStatus: Int?
        public var logTail: String?
        public var volumeId: String?
        /// On `failed`: which of the host's stages failed.
        public var failedStage: ReportRecord.FailedStage?
        public init(
            stage: ReportRecord.Stage, exitStatus: Int? = nil, logTail: String? = nil, volumeId: String? = nil,
            failedStage: ReportRecord.FailedStage? = nil
        ) {
            self.stage = stage
            self.exitStatus = exitStatus
            self.logTail = logTail
            self.volumeId = volumeId
            self.failedStage = failedStage
        }
    }

    public static let maxLogTail = 64 * 1024

    /// Records what a host said; says whether it was recorded (not once the host is set up or torn down:
    /// its token closes then, so such a report normally stops at `authenticate`).
    /// The answer names the attempt the report belongs to (as `task` does), read from the same row.
    public func report(hostID: String, token: String, _ report: Report) async throws -> ReportAnswer {
        let host = try authenticate(hostID: hostID, token: token)
        let attempt = Self.attempt(of: host)
        if host.hostState == .ready || host.hostState.kind == .destroying || host.hostState == .destroyed {
            return ReportAnswer(recorded: false, attempt: attempt)
        }
        if let tail = report.logTail, tail.utf8.count > Self.maxLogTail {
            throw ServiceError(.invalid, "logTail is \(tail.utf8.count) bytes; send at most the last \(Self.maxLogTail)")
        }
        if report.stage == .configured && report.exitStatus == nil {
            throw ServiceError(.invalid, "a configured report needs exitStatus")
        }
        try await store.recordReport(
            hostID: hostID, stage: report.stage, exitStatus: report.exitStatus, detail: report.logTail ?? report.volumeId,
            failedStage: report.stage == .failed ? report.failedStage : nil, now: clock.now)
        logger.info("Host reported", metadata: ["host.id": "\(hostID)", "stage": "\(report.stage.rawValue)"])
        await wake(hostID, host.hostState != .pending)
        return ReportAnswer(recorded: true, attempt: attempt)
    }

    public enum Enrollment: Sendable, Equatable {
        case tooEarly
        case delivered(info: EnrollmentInfo, oneTimePassword: Secret)
        case gone
    }

    /// The one-time password: too early before pre-registration; served until the host's next report
    /// acknowledges it (so a response lost in a crash can be fetched again); gone afterwards.
    public func enrollment(hostID: String, token: String) async throws -> Enrollment {
        let host = try authenticate(hostID: hostID, token: token)
        let spec = try host.decodedSpec
        guard host.decodedFacts.directoryBaseline != nil else { return .tooEarly }
        switch try await store.deliverSecret(hostID: hostID, kind: .oneTimePassword, now: clock.now) {
        case .notYet: return .tooEarly
        case .gone: return .gone
        case .delivered(let sealed):
            let otp = try secrets.open(sealed, hostID: hostID, kind: SecretRecord.Kind.oneTimePassword.rawValue)
            logger.info("One-time password delivered", metadata: ["host.id": "\(hostID)"])
            return .delivered(info: directory.enrollmentInfo(for: DirectoryHost(fqdn: spec.fqdn)), oneTimePassword: otp)
        }
    }

    /// What the orchestrator waits for from the host now. The attempt changes with every retry or
    /// resume (they move the host's floor for `failed` reports), so a host that failed runs again
    /// exactly once per retry.
    public func task(hostID: String, token: String) throws -> HostTask {
        let host = try authenticate(hostID: hostID, token: token)
        let attempt = Self.attempt(of: host)
        switch host.hostState {
        case .running(let step) where step.isWaiting, .waiting(let step):
            return HostTask(step: step.rawValue, attempt: attempt)
        case .ready:
            return HostTask(step: "done", attempt: attempt)
        default:
            return HostTask(step: "none", attempt: attempt)
        }
    }

    /// A host's current attempt: its generation and its floor for `failed` reports, which every
    /// retry and resume moves.
    static func attempt(of host: HostRecord) -> String { "g\(host.generation)-\(host.reportFloor(for: .failed))" }

    /// The private repository's credential, for a host being set up (pending, running or waiting).
    public func repositoryCredential(hostID: String, token: String) throws -> RepositoryCredential? {
        let host = try authenticate(hostID: hostID, token: token)
        // Served while the host is set up; after that it is on the host (0600 under /etc/onetouch).
        guard [.pending, .running, .waiting].contains(host.hostState.kind) else {
            throw ServiceError(
                .gone, "the repository credential is served only while the host is set up; the host keeps its copy in /etc/onetouch")
        }
        return repositoryCredential
    }

    /// The data volume the host should mount, once it is attached.
    /// The volume's id and, where the cloud gave it one, the device name it was attached as.
    public func volume(hostID: String, token: String) throws -> (id: String, device: String?)? {
        let host = try authenticate(hostID: hostID, token: token)
        let attached = host.hostState == .ready || host.hostState.step.map { $0 > .attachVolume && !$0.isTeardown } == true
        guard attached else {
            // Measured by scripts/bench-vm: how long a guest waits for its volume.
            logger.debug("Volume asked for before it is attached", metadata: ["host.id": "\(hostID)"])
            return nil
        }
        logger.debug("Volume handed to the host", metadata: ["host.id": "\(hostID)"])
        let facts = host.decodedFacts
        return facts.volumeID.map { ($0, facts.volumeDevice) }
    }
}
