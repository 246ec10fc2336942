/// Where a host is in its life. State-specific data lives in the payloads.
public enum HostState: Equatable, Sendable, CustomStringConvertible {
    case pending
    case running(Step)
    case waiting(Step)
    case ready
    case failed(Step, reason: String)
    case paused(Step, reason: String)
    case destroying(Step)
    case destroyed

    /// The name stored in the database and shown to users.
    public var kind: Kind {
        switch self {
        case .pending: .pending
        case .running: .running
        case .waiting: .waiting
        case .ready: .ready
        case .failed: .failed
        case .paused: .paused
        case .destroying: .destroying
        case .destroyed: .destroyed
        }
    }

    public var step: Step? {
        switch self {
        case .running(let s), .waiting(let s), .failed(let s, _), .paused(let s, _), .destroying(let s): s
        case .pending, .ready, .destroyed: nil
        }
    }

    public var reason: String? {
        switch self {
        case .failed(_, let r), .paused(_, let r): r
        default: nil
        }
    }

    /// Hosts the engine drives by itself.
    public var isUnfinished: Bool {
        switch kind {
        case .pending, .running, .waiting, .destroying: true
        case .ready, .failed, .paused, .destroyed: false
        }
    }

    public var description: String {
        if let step { "\(kind.rawValue)(\(step.rawValue))" } else { kind.rawValue }
    }

    public enum Kind: String, CaseIterable, Codable, Sendable {
        case pending, running, waiting, ready, failed, paused, destroying, destroyed
    }

    /// Rebuilds a state from its stored columns; nil when the columns do not describe a state.
    public init?(kind: Kind, step: Step?, reason: String?) {
        switch (kind, step) {
        case (.pending, nil): self = .pending
        case (.ready, nil): self = .ready
        case (.destroyed, nil): self = .destroyed
        case (.running, let s?): self = .running(s)
        case (.waiting, let s?): self = .waiting(s)
        case (.destroying, let s?): self = .destroying(s)
        case (.failed, let s?): self = .failed(s, reason: reason ?? "")
        case (.paused, let s?): self = .paused(s, reason: reason ?? "")
        default: return nil
        }
    }
}
