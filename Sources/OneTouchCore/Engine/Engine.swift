import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Where a crash can strike around a step's external call; tests stop the engine there.
public enum CrashPoint: String, Sendable, CaseIterable {
    case attemptCommitted = "attempt-committed"
    case externalCallMade = "external-call-made"
    case resultCommitted = "result-committed"
}

/// Thrown by a crash hook to stop the engine at a `CrashPoint` in tests.
public struct SimulatedCrash: Error {
    public init() {}
}

/// Drives every unfinished host through its steps, concurrently and bounded, surviving crashes.
///
/// Rules: the attempt (with its idempotency key) is committed before the external call and its result
/// after; errors carry their class; deadlines are persisted; time, randomness and ids are injected.
public final class Engine: Service, Sendable {
    public struct Options: Sendable {
        public var concurrency: Int = 32
        public var retry = RetryPolicy()
        public var timeouts: [Step: Duration] = [.bootstrap: .seconds(900), .configPull: .seconds(2700)]
        public var leaseTTL: Duration = .seconds(30)
        /// Longest sleep between looks at the schedule.
        public var idleInterval: Duration = .seconds(5)
        /// Decides whether the holder of an unexpired lease is gone (a crashed process on this
        /// machine), so a restart need not wait for the lease to expire.
        public var leaseHolderIsGone: @Sendable (String) -> Bool = { _ in false }
        public init() {}
    }

    public let services: StepServices
    public let options: Options
    private let clock: any EngineClock
    private let random: any RandomSource
    private let owner: String
    private let scheduler = Scheduler()
    private let crashHook: (@Sendable (Step, CrashPoint) throws -> Void)?
    /// Decoded specs of the hosts in flight: a spec never changes after `create`, and decoding it for
    /// every step was a measurable part of the engine's CPU.
    private let specs = Mutex<[String: HostSpec]>([:])
    private let healthState = Mutex(Health())
    private var store: Store { services.store }
    private var logger: Logger { services.logger }

    public init(
        services: StepServices, options: Options = Options(), clock: any EngineClock = SystemClock(),
        random: any RandomSource = SystemRandom(), owner: String,
        crashHook: (@Sendable (Step, CrashPoint) throws -> Void)? = nil
    ) {
        self.services = services
        self.options = options
        self.clock = clock
        self.random = random
        self.owner = owner
        self.crashHook = crashHook
    }

    public static let leaseName = "engine"

    /// What `/readyz` reports about the loop: when it last looked at the schedule, and why it is
    /// paused when it cannot hold its lease.
    public struct Health: Sendable {
        public var started = false
        public var lastTick: Date?
        /// Set while the engine cannot take or renew its lease (another holder, a database that takes
        /// no writes): it starts no step until it holds the lease again.
        public var paused: String?
        public var owner = ""
        /// The last error of each step's external calls (the cloud's, the directory's), with when.
        public var lastErrors: [Step: (error: String, at: Date)] = [:]
    }

    public var health: Health { healthState.withLock { $0 } }

    /// The engine's queue now: hosts due and waiting for a slot, and hosts being worked on.
    public func queue() async -> (due: Int, inFlight: Int) { await scheduler.depth(now: clock.now) }

    /// Thrown out of the loop when the lease cannot be renewed: every step in flight is cancelled (a
    /// crash to resume), and the engine waits until it holds the lease again.
    struct LeaseLost: Error {
        let reason: String
    }

    // MARK: Running

    /// Takes the lease, loads every unfinished host and drives them until cancelled.
    public func run() async throws {
        try await store.acquireLease(
            Self.leaseName, owner: owner, ttl: options.leaseTTL, now: clock.now, holderIsGone: options.leaseHolderIsGone)
        healthState.withLock {
            $0.started = true
            $0.owner = owner
        }
        var failure: (any Error)?
        do {
            let loaded = try await loadUnfinishedHosts()
            logger.info("Engine started", metadata: ["hosts.unfinished": "\(loaded)", "engine.owner": "\(owner)"])
            // On SIGTERM/SIGINT the loop and in-flight steps are cancelled: that is a crash the engine
            // is built to survive, and the next start resumes every host.
            try await cancelWhenGracefulShutdown {
                while true {
                    do {
                        try await self.drive()
                        return
                    } catch let lost as LeaseLost {
                        try await self.regainLease(lost)
                    }
                }
            }
        } catch {
            failure = error
        }
        try? await store.releaseLease(Self.leaseName, owner: owner)
        if let failure { throw failure }
        logger.info("Engine stopped", metadata: ["engine.owner": "\(owner)"])
    }

    private func drive() async throws {
        var leaseRenewal = clock.now.addingTimeInterval(options.leaseTTL.seconds / 3)
        try await withThrowingDiscardingTaskGroup { group in
            while !Task.isCancelled {
                let now = clock.now
                healthState.withLock { $0.lastTick = now }
                if now >= leaseRenewal {
                    do {
                        try await store.acquireLease(Self.leaseName, owner: owner, ttl: options.leaseTTL, now: now)
                    } catch is CancellationError {
                        return
                    } catch {
                        throw LeaseLost(reason: "\(error)")
                    }
                    leaseRenewal = now.addingTimeInterval(options.leaseTTL.seconds / 3)
                }
                let free = options.concurrency - (await scheduler.inFlightCount)
                let ids = free > 0 ? await scheduler.takeDue(now: now, limit: free) : []
                for id in ids {
                    group.addTask {
                        await self.process(id)
                        await self.scheduler.finished(id)
                    }
                }
                if !ids.isEmpty { continue }
                var wakeAt = min(leaseRenewal, now.addingTimeInterval(options.idleInterval.seconds))
                // With every slot taken, hosts that are due wait for one to free up (a change), not for
                // their due time, which has passed: looking again at once would spin.
                if free > 0, let next = await scheduler.nextDue() { wakeAt = min(wakeAt, next) }
                await waitForChange(until: wakeAt)
            }
        }
    }

    /// Waits, looking every second, until the lease is this engine's again; then schedules every
    /// unfinished host anew (the steps cancelled with the lost lease resume like after a crash).
    private func regainLease(_ lost: LeaseLost) async throws {
        let reason = "cannot renew its lease: \(lost.reason)"
        healthState.withLock { $0.paused = reason }
        logger.error("Engine paused: it starts no step until it holds its lease again", metadata: ["reason": "\(reason)"])
        while true {
            try Task.checkCancellation()
            let now = clock.now
            healthState.withLock { $0.lastTick = now }
            do {
                try await store.acquireLease(
                    Self.leaseName, owner: owner, ttl: options.leaseTTL, now: now, holderIsGone: options.leaseHolderIsGone)
                break
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                healthState.withLock { $0.paused = "cannot renew its lease: \(error)" }
            }
            try await clock.sleep(until: now.addingTimeInterval(1))
        }
        healthState.withLock { $0.paused = nil }
        let loaded = try await loadUnfinishedHosts()
        logger.notice("Engine resumed: it holds its lease again", metadata: ["hosts.unfinished": "\(loaded)"])
    }

    private func waitForChange(until date: Date) async {
        let clock = self.clock
        let scheduler = self.scheduler
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await scheduler.waitForChange() }
            group.addTask { try? await clock.sleep(until: date) }
            await group.next()
            group.cancelAll()
        }
    }

    /// Loads every unfinished host into the schedule; returns how many.
    @discardableResult
    public func loadUnfinishedHosts() async throws -> Int {
        let hosts = try store.unfinishedHosts()
        let now = clock.now
        // Waiting hosts are looked at once right away: a host may have reported while no engine ran.
        for host in hosts {
            await scheduler.schedule(host.id, at: host.waiting ? now : host.nextAt ?? now, priority: host.waiting ? Self.woken : 0)
        }
        return hosts.count
    }

    /// Asks the engine to look at a host now (a new host, a report, a command).
    /// A host under way that is woken (it reported, a command was given) goes before hosts not yet
    /// started: a burst of `create`s must not keep booted hosts waiting.
    /// `underWay`: the host is past `pending` (the caller has just read its row).
    public func wake(_ hostID: String, underWay: Bool) async {
        await scheduler.schedule(hostID, at: clock.now, priority: underWay ? Self.woken : 0)
    }

    /// Scheduling priority of a host under way that someone is waiting on.
    static let woken = 100

    /// Scheduling priority by how far along the host is: a host nearer to ready goes first.
    static func priority(_ state: HostState) -> Int {
        switch state {
        case .running(let step), .waiting(let step), .destroying(let step): return 1 + (Step.allCases.firstIndex(of: step) ?? 0)
        default: return 0
        }
    }

    /// Processes every host that is due now, repeatedly, until none is due at the current time.
    /// Used by tests and the benchmark with a controlled clock.
    public func runUntilIdle() async {
        while await runOnce() > 0 {}
    }

    /// Processes one batch of due hosts (up to `concurrency`, the ones the scheduler picks first);
    /// returns how many. For tests.
    @discardableResult
    public func runOnce() async -> Int {
        let ids = await scheduler.takeDue(now: clock.now, limit: options.concurrency)
        await withDiscardingTaskGroup { group in
            for id in ids {
                group.addTask {
                    await self.process(id)
                    await self.scheduler.finished(id)
                }
            }
        }
        return ids.count
    }

    /// When the host is next due, if it is scheduled (for tests).
    public func nextDue() async -> Date? { await scheduler.nextDue() }

    // MARK: One host

    func process(_ hostID: String) async {
        do {
            let now = clock.now
            let claimed = try await store.claimStep(hostID: hostID, now: now) { host, step in
                switch host.hostState {
                case .running, .waiting, .destroying: return self.newAttempt(host, step)
                case .paused where Self.recheckDue(host, now: now): return self.newAttempt(host, step)
                default: return nil
                }
            }
            guard let (host, attempt, fresh) = claimed else { return }
            var next: Continuation?
            switch host.hostState {
            case .pending:
                next = try await move(host, .begin, because: "engine picked the host up")
            case .running(let step), .waiting(let step), .destroying(let step), .paused(let step, _):
                // A paused host gets here only when its re-check is due (a pause that may clear by itself,
                // credentials say): the step runs again while the host stays paused, and only an outcome
                // other than the same pause is recorded (`finish`).
                guard let attempt else {
                    // Woken before its re-check (a host reported, say): the re-check stays due.
                    if case .paused = host.hostState, let recheck = host.nextAt { await scheduler.schedule(hostID, at: recheck) }
                    return
                }
                if fresh { try crash(step, .attemptCommitted) }
                next = try await runStep(step, of: host, attempt: attempt, fresh: fresh)
            case .ready, .failed, .destroyed:
                return
            }
            // A step that is due at once continues in this task, from the row and attempt just committed.
            while let due = next {
                try crash(due.step, .attemptCommitted)
                next = try await runStep(due.step, of: due.host, attempt: due.attempt, fresh: true, facts: due.facts)
            }
        } catch is SimulatedCrash {
            logger.warning("Simulated crash", metadata: ["host.id": "\(hostID)"])
        } catch is CancellationError {
            logger.debug("Stopped mid-step by shutdown; the next start resumes it", metadata: ["host.id": "\(hostID)"])
        } catch let error as HostChanged {
            logger.debug("Host changed meanwhile; looking again", metadata: ["host.id": "\(error.hostID)"])
            await scheduler.schedule(hostID, at: clock.now)
        } catch {
            // The store itself failed (disk full, database locked too long): try again later.
            logger.error("Could not process host", metadata: ["host.id": "\(hostID)", "error": "\(error)"])
            await scheduler.schedule(hostID, at: clock.now.addingTimeInterval(5))
        }
    }

    /// A paused host whose cause may clear by itself is re-checked at `nextAt`.
    static func recheckDue(_ host: HostRecord, now: Date) -> Bool {
        host.nextAt.map { $0 <= now } == true
    }

    /// The workflow a step's result applies to. A paused host whose re-check ran the step is resumed
    /// first, so that the result is one move out of the pause (`resumed`).
    private func workflowForResult(of host: HostRecord) throws -> (workflow: HostWorkflow, resumed: Bool) {
        var workflow = HostWorkflow(state: host.hostState)
        guard case .paused = host.hostState else { return (workflow, false) }
        _ = try workflow.apply(.resume)
        return (workflow, true)
    }

    /// A step to run at once: its attempt was committed with the transition into it.
    struct Continuation {
        var host: HostRecord
        var attempt: AttemptRecord
        var step: Step
        /// The facts just committed (saves decoding them again).
        var facts: HostFacts?
    }

    /// An engine-made transition that is due at once (its own commit and event), with the intent of
    /// the step it enters.
    private func move(_ host: HostRecord, _ input: HostWorkflow.Input, because reason: String) async throws -> Continuation? {
        var workflow = HostWorkflow(state: host.hostState)
        _ = try workflow.apply(input)
        var update = Store.HostUpdate()
        update.state = workflow.state
        update.eventReason = reason
        update.nextAt = .some(clock.now)
        return try await commit(host, update, entering: workflow.state)
    }

    /// Commits `update`; when it enters a step, that step's attempt goes into the same transaction
    /// (the intent before the external call, one commit instead of two) and the step continues at
    /// once. Otherwise the host is scheduled by `nextAt`, if it has one.
    private func commit(
        _ host: HostRecord, _ update: Store.HostUpdate, entering state: HostState, facts: HostFacts? = nil
    ) async throws -> Continuation? {
        var update = update
        let step: Step?
        switch state {
        case .running(let s), .destroying(let s): step = s
        default: step = nil
        }
        if let step {
            var next = host
            if let generation = update.generation { next.generation = generation }
            let (key, deadline) = newAttempt(next, step)
            update.newAttempt = Store.NewAttempt(step: step, key: key, deadline: deadline)
        }
        let (row, attempt) = try await store.advance(host, update, now: clock.now)
        if let step, let attempt { return Continuation(host: row, attempt: attempt, step: step, facts: update.facts ?? facts) }
        if case .some(.some(let at)) = update.nextAt { await scheduler.schedule(host.id, at: at, priority: Self.priority(state)) }
        return nil
    }

    private func crash(_ step: Step, _ point: CrashPoint) throws {
        try crashHook?(step, point)
    }

    /// The key and deadline of a new attempt of `step`. An attempt a crash or a waiting step left open
    /// is continued instead: same key, same deadline.
    private func newAttempt(_ host: HostRecord, _ step: Step) -> (key: String, deadline: Date?) {
        let deadline = step.isWaiting ? options.timeouts[step].map { clock.now.addingTimeInterval($0.seconds) } : nil
        return (Self.idempotencyKey(host, step), deadline)
    }

    private func runStep(
        _ step: Step, of host: HostRecord, attempt: AttemptRecord, fresh: Bool, facts known: HostFacts? = nil
    ) async throws -> Continuation? {
        guard let implementation = Steps.all[step] else { return nil }
        let spec = try self.spec(of: host)
        var attempt = attempt
        let now = clock.now
        let facts: HostFacts
        do { facts = try known ?? host.readFacts() } catch let error as UnreadableFacts {
            try await finish(
                host, step: step, attempt: &attempt,
                error: .permanent(
                    error.description,
                    hint:
                        "restore the database from a backup, or run `onetouch retry \(spec.name) --from provision` for a new machine (look for the old one with `onetouch reconcile`)"
                ), spec: spec)
            return nil
        }
        var context = StepContext(host: host, spec: spec, facts: facts, attempt: attempt, now: now, services: services)
        context.mayHaveRunBefore = !(fresh && attempt.attempt == 1)
        let outcome: StepOutcome
        do {
            outcome = try await implementation.run(context)
        } catch is SimulatedCrash {
            throw SimulatedCrash()
        } catch {
            // A step cut short by shutdown (SIGTERM, SIGINT, lease loss) is a crash to resume, never a
            // step error: whatever the adapter made of the cancellation (a connection error, say),
            // nothing is recorded, no attempt is spent and the next start runs the step again.
            if Task.isCancelled || error is CancellationError { throw CancellationError() }
            try crash(step, .externalCallMade)
            let classified = StepError.classify(error)
            healthState.withLock { $0.lastErrors[step] = (classified.message, now) }
            try await finish(host, step: step, attempt: &attempt, error: classified, spec: spec)
            return nil
        }
        try crash(step, .externalCallMade)
        // The deadline counts only when the host still has not reported (a report that arrived while
        // the engine was down is honoured).
        if case .wait = outcome, let deadline = attempt.deadline, now >= deadline {
            let waited = Int(deadline.timeIntervalSince(attempt.startedAt))
            let error = StepError.permanent(
                "the host did not report \(step == .bootstrap ? "booted" : "configured") within \(waited / 60)m\(waited % 60)s",
                hint:
                    "check the instance's console log and /var/log/onetouch-bootstrap.log, then run `onetouch retry \(spec.name) --from \(step == .bootstrap ? "provision" : "config-pull")`"
            )
            try await finish(host, step: step, attempt: &attempt, error: error, spec: spec)
            return nil
        }
        let next: Continuation?
        do {
            next = try await finish(host, step: step, attempt: &attempt, outcome: outcome, previousFacts: facts)
        } catch let changed as HostChanged {
            // Destroyed or retried while the step ran: the result no longer applies, but what the step
            // made (a VM, a volume, a directory entry) is kept in the ledger for teardown to find.
            if let learned = outcome.facts { try await store.recordResources(of: host, facts: learned, now: now) }
            throw changed
        }
        try crash(step, .resultCommitted)
        return next
    }

    private func spec(of host: HostRecord) throws -> HostSpec {
        if let spec = specs.withLock({ $0[host.id] }) { return spec }
        let spec = try host.decodedSpec
        specs.withLock { $0[host.id] = spec }
        return spec
    }

    static func idempotencyKey(_ host: HostRecord, _ step: Step) -> String {
        idempotencyKey(hostID: host.id, step: step, generation: host.generation)
    }

    static func idempotencyKey(hostID: String, step: Step, generation: Int) -> String {
        "\(hostID)-\(step.rawValue)-g\(generation)"
    }

    private func finish(
        _ host: HostRecord, step: Step, attempt: inout AttemptRecord, outcome: StepOutcome, previousFacts: HostFacts
    ) async throws -> Continuation? {
        let now = clock.now
        var update = Store.HostUpdate()
        let (start, resumed) = try workflowForResult(of: host)
        var workflow = start
        let cleared = resumed ? " (the cause of the pause has cleared)" : ""
        switch outcome {
        case .done(let facts):
            attempt.finishedAt = now
            attempt.outcome = .succeeded
            services.telemetry.stepFinished(step, succeeded: true, seconds: now.timeIntervalSince(attempt.startedAt))
            update.attempt = attempt
            if facts != previousFacts { update.facts = facts }
            let effects = try workflow.apply(.stepSucceeded)
            update.state = workflow.state
            update.eventReason = "\(step.rawValue) done" + cleared
            update.nextAt = .some(workflow.state.isUnfinished ? now : nil)
            if workflow.state == .ready {
                logger.info("Host ready", metadata: ["host.id": "\(host.id)", "host.name": "\(host.name)"])
            }
            update.carryOut(effects)
            if !workflow.state.isUnfinished { specs.withLock { _ = $0.removeValue(forKey: host.id) } }
            return try await commit(host, update, entering: workflow.state, facts: facts)
        case .wait(let facts):
            update.facts = facts
            let deadline = attempt.deadline ?? now.addingTimeInterval(options.idleInterval.seconds)
            if case .running = workflow.state {
                _ = try workflow.apply(.stepWaiting)
                update.state = workflow.state
                update.eventReason = "waiting for the host to report in" + cleared
            }
            update.nextAt = .some(deadline)
            if update.state != nil || facts != previousFacts || host.nextAt != deadline {
                try await store.update(host, update, now: now)
            }
            await scheduler.schedule(host.id, at: deadline, priority: Self.priority(host.hostState))
        case .nextGeneration(let reason):
            attempt.finishedAt = now
            attempt.outcome = .abandoned
            attempt.errorMessage = reason
            update.attempt = attempt
            update.startNextGeneration(of: host, secrets: services.secrets, latestReportID: try store.latestReportID(hostID: host.id))
            // What this generation learned is about the VM that is gone; a directory entry to replace stays so.
            var facts = HostFacts()
            facts.replaceDirectoryEntry = previousFacts.replaceDirectoryEntry
            facts.reportFloors = previousFacts.reportFloors
            update.facts = facts
            update.state = workflow.state
            update.eventReason = reason + cleared
            update.nextAt = .some(now)
            logger.notice("Starting the host's next generation", metadata: ["host.id": "\(host.id)", "reason": "\(reason)"])
            return try await commit(host, update, entering: workflow.state)
        case .poll(let facts, let after):
            let next = now.addingTimeInterval(after.seconds)
            update.facts = facts
            update.nextAt = .some(next)
            if resumed {
                update.state = workflow.state
                update.eventReason = "\(step.rawValue) continues" + cleared
            }
            if resumed || facts != previousFacts { try await store.update(host, update, now: now) }
            await scheduler.schedule(host.id, at: next, priority: Self.priority(workflow.state))
        }
        return nil
    }

    private func finish(_ host: HostRecord, step: Step, attempt: inout AttemptRecord, error: StepError, spec: HostSpec) async throws {
        let now = clock.now
        var update = Store.HostUpdate()
        let (start, resumed) = try workflowForResult(of: host)
        var workflow = start
        if error.throttled {
            try await wait(host, step: step, attempt: &attempt, throttledBy: error, workflow: workflow, resumed: resumed)
            return
        }
        attempt.finishedAt = now
        attempt.errorClass = error.errorClass
        attempt.errorMessage = error.message
        services.telemetry.stepFinished(step, succeeded: false, seconds: now.timeIntervalSince(attempt.startedAt))
        var errorClass = error.errorClass
        // Adapters know neither host names nor steps: a hint may say `{host}` and `{step}`.
        var message = error.description.replacingOccurrences(of: "{host}", with: spec.name)
            .replacingOccurrences(of: "{step}", with: step.rawValue)
        if errorClass == .transient {
            let history = try store.attempts(hostID: host.id, step: step, generation: host.generation)
            let spent = RetryPolicy.spent(history: history, current: attempt, now: now)
            if spent.attempts >= options.retry.maxAttempts || spent.elapsed >= options.retry.budget.seconds {
                errorClass = .permanent
                message = "gave up after \(spent.attempts) attempts over \(Int(spent.elapsed))s: \(error.message)"
            } else {
                var delay = options.retry.delay(afterAttempt: spent.attempts, unit: random.unit())
                if let after = error.retryAfter, after > delay { delay = after }
                let next = now.addingTimeInterval(delay.seconds)
                attempt.outcome = .retrying
                update.attempt = attempt
                update.state = workflow.state
                update.eventReason =
                    "attempt \(spent.attempts) of \(step.rawValue) failed (\(error.message)); retrying in \(String(format: "%.1f", delay.seconds))s"
                update.nextAt = .some(next)
                try await store.update(host, update, now: now)
                logger.notice(
                    "Step failed; will retry",
                    metadata: [
                        "host.id": "\(host.id)", "step": "\(step.rawValue)", "attempt": "\(spent.attempts)", "error": "\(error.message)",
                    ])
                await scheduler.schedule(host.id, at: next, priority: Self.priority(workflow.state))
                return
            }
        }
        if error.hint == nil { message += "; fix the cause, then run `onetouch resume \(spec.name)`" }
        attempt.outcome = errorClass == .needsHuman ? .paused : .failed
        update.attempt = attempt
        let recheck = errorClass == .needsHuman ? error.retryAfter.map { now.addingTimeInterval($0.seconds) } : nil
        update.nextAt = .some(recheck)
        if resumed, let recheck {
            // Still paused for a cause that may clear by itself: the first pause is on record, and the
            // attempt row keeps what this re-check saw. No event, so a pause of days writes none.
            try await store.update(host, update, now: now)
            await scheduler.schedule(host.id, at: recheck)
            logger.info("Still paused", metadata: ["host.id": "\(host.id)", "step": "\(step.rawValue)", "reason": "\(message)"])
            return
        }
        let effects = try workflow.apply(errorClass == .needsHuman ? .needsHuman(reason: message) : .stepFailed(reason: message))
        update.state = workflow.state
        update.eventReason = message
        update.carryOut(effects)
        try await store.update(host, update, now: now)
        specs.withLock { _ = $0.removeValue(forKey: host.id) }
        if let recheck { await scheduler.schedule(host.id, at: recheck) }
        logger.warning(
            errorClass == .needsHuman ? "Host paused" : "Host failed",
            metadata: ["host.id": "\(host.id)", "step": "\(step.rawValue)", "reason": "\(message)"])
    }

    /// The service asked to slow down: the step waits and runs again under the same attempt, which
    /// stays open, so throttling spends neither an attempt nor the step's time budget (the wait is
    /// noted in the attempt's data). Only the first throttle of an attempt is an event.
    private func wait(
        _ host: HostRecord, step: Step, attempt: inout AttemptRecord, throttledBy error: StepError, workflow: HostWorkflow,
        resumed: Bool
    ) async throws {
        let now = clock.now
        var notes = ThrottleNotes(decoding: attempt.data)
        notes.count += 1
        var delay = options.retry.delay(afterAttempt: notes.count, unit: random.unit())
        if let after = error.retryAfter, after > delay { delay = after }
        notes.waited += delay.seconds
        attempt.data = notes.encoded(into: attempt.data)
        let next = now.addingTimeInterval(delay.seconds)
        var update = Store.HostUpdate()
        update.attempt = attempt
        update.nextAt = .some(next)
        if notes.count == 1 || resumed {
            update.state = workflow.state
            update.eventReason =
                "\(step.rawValue) is throttled (\(error.message)); waiting \(String(format: "%.1f", delay.seconds))s, which spends no attempt"
        }
        try await store.update(host, update, now: now)
        logger.info(
            "Throttled; waiting",
            metadata: [
                "host.id": "\(host.id)", "step": "\(step.rawValue)", "wait": "\(String(format: "%.1f", delay.seconds))s",
                "throttled": "\(notes.count)",
            ])
        await scheduler.schedule(host.id, at: next, priority: Self.priority(workflow.state))
    }

}
