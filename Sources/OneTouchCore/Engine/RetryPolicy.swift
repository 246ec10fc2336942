import Foundation

/// Capped exponential backoff with full jitter, inside a per-step budget of attempts and time.
public struct RetryPolicy: Sendable, Equatable {
    public var baseDelay: Duration
    public var maxDelay: Duration
    /// Attempts per step before a transient error becomes a failure.
    public var maxAttempts: Int
    /// Time per step, from its first attempt, before a transient error becomes a failure.
    public var budget: Duration

    public init(
        baseDelay: Duration = .seconds(1), maxDelay: Duration = .seconds(60), maxAttempts: Int = 10,
        budget: Duration = .seconds(30 * 60)
    ) {
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.maxAttempts = maxAttempts
        self.budget = budget
    }

    /// The delay before attempt `attempt + 1`: uniform in [0, min(maxDelay, baseDelay · 2^(attempt-1))].
    /// `unit` is a random number in [0, 1) drawn by the caller (randomness is injected).
    public func delay(afterAttempt attempt: Int, unit: Double) -> Duration {
        let exponent = Double(max(0, min(attempt - 1, 30)))
        let ceiling = min(maxDelay.seconds, baseDelay.seconds * pow2(exponent))
        return .milliseconds(Int64((ceiling * max(0, min(unit, 1)) * 1000).rounded(.down)))
    }

    /// What the step has spent of its budget when `current` failed: the attempts of its current run
    /// (the trailing attempts that ended `retrying`, plus `current`; a pause, a failure or a success
    /// ends a run, so a host resumed by a person or by a re-check starts afresh) and the time since
    /// the first of them, less the time they spent waiting out throttling. `history` is every attempt
    /// of the step in this generation, oldest first.
    public static func spent(history: [AttemptRecord], current: AttemptRecord, now: Date) -> (attempts: Int, elapsed: TimeInterval) {
        var run = [current]
        for previous in history.reversed() where previous.id != current.id {
            guard previous.outcome == .retrying else { break }
            run.append(previous)
        }
        let first = run.map(\.startedAt).min() ?? current.startedAt
        let throttled = run.reduce(0) { $0 + ThrottleNotes(decoding: $1.data).waited }
        return (run.count, max(0, now.timeIntervalSince(first) - throttled))
    }

    private func pow2(_ e: Double) -> Double {
        var r = 1.0
        for _ in 0..<Int(e) { r *= 2 }
        return r
    }
}

/// What an attempt's `data` keeps about throttling: how often the attempt was told to slow down and
/// how long it waited in all. Other keys of `data` are kept as they are.
public struct ThrottleNotes: Sendable, Equatable {
    public var count = 0
    public var waited: TimeInterval = 0

    public init(decoding data: String) {
        let object = (try? JSONSerialization.jsonObject(with: Data(data.utf8))) as? [String: Any]
        count = (object?["throttled"] as? NSNumber)?.intValue ?? 0
        waited = (object?["throttledSeconds"] as? NSNumber)?.doubleValue ?? 0
    }

    /// `data` with these notes written into it.
    public func encoded(into data: String) -> String {
        var object = ((try? JSONSerialization.jsonObject(with: Data(data.utf8))) as? [String: Any]) ?? [:]
        object["throttled"] = count
        object["throttledSeconds"] = (waited * 1000).rounded() / 1000
        guard let encoded = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return data }
        return String(decoding: encoded, as: UTF8.self)
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    public var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
