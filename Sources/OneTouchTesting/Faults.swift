import OneTouchCore
import Synchronization

/// A failure to inject into a fake adapter call.
public enum Fault: Sendable, Equatable {
    /// Fails before the side effect with a transient error.
    case transient
    /// Fails before the side effect with a permanent error.
    case permanent(String)
    /// Fails before the side effect, asking for a person.
    case needsHuman(String)
    /// Fails before the side effect, asking for a person, but may clear by itself (expired credentials).
    case needsHumanRecheck(String, after: Duration)
    /// Fails before the side effect because the service asks to slow down (EC2 `RequestLimitExceeded`).
    case throttled(retryAfter: Duration?)
    /// Performs the side effect, then loses the response (a transient error reaches the caller).
    case lostResponse
    /// Shutdown strikes during the call: the calling task is cancelled and the adapter reports it the
    /// way HTTP clients do, as a connection error.
    case cancelledMidCall
}

/// Queues of faults per operation name, consumed one per call.
public final class FaultPlan: Sendable {
    private let queues = Mutex<[String: [Fault]]>([:])
    public init() {}

    public func inject(_ fault: Fault, into operation: String, times: Int = 1) {
        queues.withLock { $0[operation, default: []].append(contentsOf: Array(repeating: fault, count: times)) }
    }

    func next(_ operation: String) -> Fault? {
        queues.withLock { queues in
            guard var queue = queues[operation], !queue.isEmpty else { return nil }
            let fault = queue.removeFirst()
            queues[operation] = queue
            return fault
        }
    }

    /// Runs `effect` under the next fault for `operation`, if any.
    func perform<T>(_ operation: String, _ effect: () throws -> T) throws -> T {
        switch next(operation) {
        case nil: return try effect()
        case .transient?: throw StepError.transient("injected transient failure in \(operation)")
        case .permanent(let message)?: throw StepError.permanent(message)
        case .needsHuman(let message)?: throw StepError.needsHuman(message)
        case .needsHumanRecheck(let message, let after)?: throw StepError.needsHuman(message, recheckAfter: after)
        case .throttled(let retryAfter)?:
            throw StepError.throttled("injected RequestLimitExceeded in \(operation)", retryAfter: retryAfter)
        case .lostResponse?:
            _ = try effect()
            throw StepError.transient("injected lost response from \(operation)")
        case .cancelledMidCall?:
            withUnsafeCurrentTask { $0?.cancel() }
            throw StepError.transient("connection reset by peer during \(operation)")
        }
    }
}
