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

    private func pow2(_ e: Double) -> Double {
        var r = 1.0
        for _ in 0..<Int(e) { r *= 2 }
        return r
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    public var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
