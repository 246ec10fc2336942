/// The host lifecycle as a pure value: it decides, the engine acts. No I/O, clock or logger inside.
///
/// Every move is checked against `HostWorkflow.transitions`, the one table of allowed moves, and
/// `apply` returns the `Effects` the move calls for (wipe the password, close the token, start a
/// generation, …). The engine and `HostService` carry them out in the same commit as the new state;
/// they decide none of them themselves.
public struct HostWorkflow: Sendable, Equatable {
    public private(set) var state: HostState

    public init(state: HostState = .pending) { self.state = state }

    /// What happened to a host.
    public enum Input: Sendable, Equatable {
        /// The engine picked up a new host.
        case begin
        /// The current step finished its work.
        case stepSucceeded
        /// The current (waiting) step is now waiting for the host to report in.
        case stepWaiting
        /// The current step failed in a way no retry can fix.
        case stepFailed(reason: String)
        /// The current step needs a person before it can go on.
        case needsHuman(reason: String)
        /// A person asked to continue from the step where the host stopped.
        case resume
        /// A person asked to run again from an earlier (or the same) step.
        case retry(from: Step)
        /// A person asked to tear the host down.
        case destroy
    }

    /// What a transition calls for besides the new state.
    public struct Effects: Sendable, Equatable {
        /// The step the engine runs next (nil: none until something happens).
        public var runStep: Step?
        /// Wipe the one-time password: its use has ended (ready, failed for good, torn down).
        public var wipeOneTimePassword = false
        /// Close the host API to the host's token (ready: set up; torn down: nothing more to say).
        public var revokeHostToken = false
        /// A new machine under a new launch key, host token and report floor; what the facts say about
        /// the old machine no longer holds.
        public var startNextGeneration = false
        /// Pre-register again: the directory baseline is stale, and an entry this host made may be replaced.
        public var preregisterAgain = false
        /// Look the data volume up again and, if none is left, request it under a new key (the cloud may
        /// have rolled the last one back).
        public var requestVolumeAgain = false
        /// Verify enrollment and announce again (anything from a retry on).
        public var verifyAgain = false
        /// Reports of these stages so far are stale: only newer ones count.
        public var staleReports: Set<ReportRecord.Stage> = []

        public init(
            runStep: Step? = nil, wipeOneTimePassword: Bool = false, revokeHostToken: Bool = false, startNextGeneration: Bool = false,
            preregisterAgain: Bool = false, requestVolumeAgain: Bool = false, verifyAgain: Bool = false,
            staleReports: Set<ReportRecord.Stage> = []
        ) {
            self.runStep = runStep
            self.wipeOneTimePassword = wipeOneTimePassword
            self.revokeHostToken = revokeHostToken
            self.startNextGeneration = startNextGeneration
            self.preregisterAgain = preregisterAgain
            self.requestVolumeAgain = requestVolumeAgain
            self.verifyAgain = verifyAgain
            self.staleReports = staleReports
        }
    }

    public struct InvalidTransition: Error, Equatable, CustomStringConvertible {
        public let from: HostState
        public let input: String
        public var description: String { "cannot \(input) a host that is \(from)" }
    }

    /// Allowed moves, by state kind. This is enforced in `apply`, so get it right.
    public static let transitions: [HostState.Kind: Set<HostState.Kind>] = [
        .pending: [.running, .destroying],
        .running: [.running, .waiting, .ready, .failed, .paused, .destroying],
        .waiting: [.running, .failed, .paused, .destroying],
        .ready: [.running, .destroying],
        .failed: [.running, .destroying],
        .paused: [.running, .destroying],
        .destroying: [.destroying, .destroyed, .failed, .paused],
        .destroyed: [],
    ]

    /// Applies an input and returns what the move calls for.
    @discardableResult
    public mutating func apply(_ input: Input) throws(InvalidTransition) -> Effects {
        let target = try nextState(for: input)
        guard Self.transitions[state.kind, default: []].contains(target.kind) else {
            throw InvalidTransition(from: state, input: input.verb)
        }
        state = target
        return Self.effects(of: input, reaching: target)
    }

    private static func effects(of input: Input, reaching target: HostState) -> Effects {
        var effects = Effects()
        switch target {
        case .pending: effects.runStep = Step.provisioning[0]
        case .running(let s), .waiting(let s), .destroying(let s): effects.runStep = s
        case .ready, .failed, .paused, .destroyed: break
        }
        switch (input, target) {
        case (_, .ready):
            // Set up: the host's bootstrap token has done its job and stops working.
            effects.wipeOneTimePassword = true
            effects.revokeHostToken = true
        case (_, .destroyed), (.destroy, _):
            // Torn down (or about to be): nothing more to fetch or say.
            effects.wipeOneTimePassword = true
            effects.revokeHostToken = true
        case (.stepFailed, _):
            effects.wipeOneTimePassword = true  // a failure for good ends the password's use
        default:
            break
        }
        // A person's command makes earlier failure reports stale.
        switch input {
        case .resume, .destroy: effects.staleReports = [.failed]
        case .retry(let from):
            effects.staleReports = [.failed]
            if from <= .bootstrap { effects.staleReports.insert(.booted) }
            if from <= .attachVolume { effects.staleReports.insert(.volumeMounted) }
            if from <= .configPull { effects.staleReports.insert(.configured) }
            effects.startNextGeneration = from == .provision
            effects.preregisterAgain = from <= .preregister
            effects.requestVolumeAgain = from > .provision && from <= .attachVolume
            effects.verifyAgain = true
        default: break
        }
        return effects
    }

    private func nextState(for input: Input) throws(InvalidTransition) -> HostState {
        let invalid = InvalidTransition(from: state, input: input.verb)
        switch (state, input) {
        case (.pending, .begin):
            return .running(Step.provisioning[0])

        case (.running(let step), .stepSucceeded), (.waiting(let step), .stepSucceeded):
            if let next = step.next { return .running(next) }
            return .ready
        case (.destroying(let step), .stepSucceeded):
            if let next = step.next { return .destroying(next) }
            return .destroyed

        case (.running(let step), .stepWaiting) where step.isWaiting:
            return .waiting(step)

        case (.running(let step), .stepFailed(let reason)), (.waiting(let step), .stepFailed(let reason)),
            (.destroying(let step), .stepFailed(let reason)):
            return .failed(step, reason: reason)
        case (.running(let step), .needsHuman(let reason)), (.waiting(let step), .needsHuman(let reason)),
            (.destroying(let step), .needsHuman(let reason)):
            return .paused(step, reason: reason)

        case (.failed(let step, _), .resume), (.paused(let step, _), .resume):
            return step.isTeardown ? .destroying(step) : .running(step)

        case (.failed(let step, _), .retry(let from)), (.paused(let step, _), .retry(let from)):
            guard !step.isTeardown, !from.isTeardown, from <= step else { throw invalid }
            return .running(from)
        case (.ready, .retry(let from)):
            // A ready host's token is closed: only a new machine (a new generation) can run steps again.
            guard from == .provision else { throw invalid }
            return .running(from)

        case (.destroying, .destroy), (.destroyed, .destroy):
            throw invalid
        case (_, .destroy):
            return .destroying(Step.teardown[0])

        default:
            throw invalid
        }
    }
}

extension HostWorkflow.Input {
    /// How the input reads in an error message ("cannot resume a host that is ready").
    public var verb: String {
        switch self {
        case .begin: "begin"
        case .stepSucceeded: "finish a step of"
        case .stepWaiting: "wait on"
        case .stepFailed: "fail"
        case .needsHuman: "pause"
        case .resume: "resume"
        case .retry(let from): "retry from \(from.rawValue)"
        case .destroy: "destroy"
        }
    }
}
