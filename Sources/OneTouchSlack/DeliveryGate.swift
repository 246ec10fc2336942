import Foundation

/// When the next request to Slack may go, and whether any may. Pure: the announcer tells it when a
/// request starts and what Slack answered, and it says what to do with the message.
struct DeliveryGate: Sendable, Equatable {
    enum Request: Sendable { case post, update, read }

    /// What became of a message after Slack's answer.
    enum Verdict: Sendable, Equatable {
        case done
        /// Try again when the gate opens (rate limit, outage).
        case retry
        /// This message is refused for good; the others go on.
        case drop(SlackProblem)
        /// Nothing more is sent until the configuration is fixed and `serve` restarted.
        case stop(SlackProblem)
    }

    enum State: Sendable, Equatable {
        case open
        case rateLimited(until: Date)
        case backingOff(until: Date, reason: String)
        case stopped(SlackProblem)
    }

    let postInterval: Duration
    let updateInterval: Duration
    let maxBackoff: Duration
    private(set) var state: State = .open
    private(set) var failures = 0
    private var nextPost = Date.distantPast
    private var nextUpdate = Date.distantPast

    init(postInterval: Duration, updateInterval: Duration, maxBackoff: Duration) {
        self.postInterval = postInterval
        self.updateInterval = updateInterval
        self.maxBackoff = maxBackoff
    }

    /// The earliest time a request of this kind may start; nil once stopped.
    func earliest(_ request: Request) -> Date? {
        let paced: Date
        switch request {
        case .post: paced = nextPost
        case .update: paced = nextUpdate
        case .read: paced = .distantPast
        }
        switch state {
        case .open: return paced
        case .rateLimited(let until), .backingOff(let until, _): return max(until, paced)
        case .stopped: return nil
        }
    }

    /// A request starts, or its answer came: the next of its kind waits its interval from then.
    /// Counting from the answer too keeps arrivals an interval apart however long the request took
    /// to arrive (Slack counts arrivals).
    mutating func started(_ request: Request, at now: Date) {
        switch request {
        case .post: nextPost = max(nextPost, now.addingTimeInterval(postInterval.seconds))
        case .update: nextUpdate = max(nextUpdate, now.addingTimeInterval(updateInterval.seconds))
        case .read: break
        }
    }

    /// Slack's answer to a request of this kind. `jitter` in [0, 1) spreads the back-off (half of it
    /// at least is waited).
    mutating func finished(_ outcome: SlackOutcome, of request: Request, at now: Date, jitter: Double) -> Verdict {
        started(request, at: now)
        if case .stopped = state { return .retry }
        switch outcome {
        case .ok:
            failures = 0
            state = .open
            return .done
        case .rateLimited(let after):
            // Retry-After is Slack's word: every request waits it out, not just this kind.
            state = .rateLimited(until: now.addingTimeInterval(after.seconds))
            return .retry
        case .unavailable(let reason, _):
            failures += 1
            let exponent = Double(min(failures - 1, 30))
            let ceiling = min(maxBackoff.seconds, pow(2, exponent))
            let delay = ceiling * (0.5 + 0.5 * jitter)
            state = .backingOff(until: now.addingTimeInterval(delay), reason: reason)
            return .retry
        case .refused(let problem):
            switch problem.scope {
            case .integration:
                state = .stopped(problem)
                return .stop(problem)
            case .message, .parent:
                return .drop(problem)
            }
        }
    }

    /// One line for `onetouch status` and the log.
    func describe(now: Date) -> String {
        switch state {
        case .open: return "delivering"
        case .rateLimited(let until) where until > now:
            return "rate limited by Slack for \(formatDuration(until.timeIntervalSince(now))) more"
        case .backingOff(let until, let reason) where until > now:
            return "Slack unavailable (\(reason)); next try in \(formatDuration(until.timeIntervalSince(now)))"
        case .rateLimited, .backingOff: return "retrying"
        case .stopped(let problem): return "stopped: \(problem.fix)"
        }
    }
}
