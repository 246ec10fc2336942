import Foundation

/// How long a step waits for the cloud to move a resource on (an instance out of `pending`, a volume
/// out of `creating` or `detaching`) before it fails with a reason instead of polling forever.
///
/// Polls keep the step's attempt open, so the wait is measured from the attempt's start, which a
/// restart keeps. An error between polls begins a new attempt, and the retry budget bounds those.
struct PollLimit {
    /// EC2's own waiters give up after 40 looks 15 s apart.
    static let instancePending = PollLimit(seconds: 600)
    static let volumeCreating = PollLimit(seconds: 600)
    static let volumeDetaching = PollLimit(seconds: 600)
    static let instanceShuttingDown = PollLimit(seconds: 900)

    var seconds: TimeInterval

    /// How long this attempt has waited so far, if that is past the limit.
    func exceeded(_ context: StepContext) -> String? {
        let waited = context.now.timeIntervalSince(context.attempt.startedAt)
        guard waited >= seconds else { return nil }
        let whole = Int(waited)
        return "\(whole / 60)m\(whole % 60)s"
    }
}
