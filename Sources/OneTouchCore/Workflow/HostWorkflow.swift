/// The host lifecycle as a pure value: it decides, the engine acts. No I/O, clock or logger inside.
///
/// Every move is checked against `HostWorkflow.transitions`, the one table of allowed moves.
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

    /// What the engine should do after a transition.
    public enum Action: Sendable, Equatable {
        case runStep(Step)
        case none
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

    /// Applies an input and returns what the engine must do next.
    public mutating func apply(_ input: Input) throws(InvalidTransition) -> Action {
        let target = try nextState(for: input)
        guard Self.transitions[state.kind, default: []].contains(target.kind) else {
            throw InvalidTransition(from: state, input: input.verb)
        }
        state = target
        return Self.action(for: target)
    }

    /// The action a state calls for, also used when the engine resumes a host after a restart.
    public static func action(for state: HostState) -> Action {
        switch state {
        case .pending: .runStep(Step.provisioning[0])
        case .running(let s), .waiting(let s), .destroying(let s): .runStep(s)
        case .ready, .failed, .paused, .destroyed: .none
        }
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
            guard !from.isTeardown else { throw invalid }
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
