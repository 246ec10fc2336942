/// A unit of work in a host's life. Provisioning steps run in `Step.provisioning` order; teardown
/// steps run in `Step.teardown` order.
public enum Step: String, CaseIterable, Codable, Sendable, Comparable {
    case provision
    case preregister
    case bootstrap
    case attachVolume = "attach-volume"
    case configPull = "config-pull"
    case complete
    // Teardown
    case deregister
    case terminate
    case deleteVolume = "delete-volume"

    public static let provisioning: [Step] = [
        .provision, .preregister, .bootstrap, .attachVolume, .configPull, .complete,
    ]
    public static let teardown: [Step] = [.deregister, .terminate, .deleteVolume]

    /// Waiting steps finish when the host reports in, or fail at their persisted deadline.
    public var isWaiting: Bool { self == .bootstrap || self == .configPull }
    public var isTeardown: Bool { Step.teardown.contains(self) }

    /// The step after this one in its sequence, or nil for the last one.
    public var next: Step? {
        let sequence = isTeardown ? Step.teardown : Step.provisioning
        guard let index = sequence.firstIndex(of: self), index + 1 < sequence.count else { return nil }
        return sequence[index + 1]
    }

    public static func < (lhs: Step, rhs: Step) -> Bool {
        let all = Step.allCases
        return all.firstIndex(of: lhs)! < all.firstIndex(of: rhs)!
    }
}
