import Foundation

/// Time, as the engine sees it. Injected so tests control it.
public protocol EngineClock: Sendable {
    var now: Date { get }
    /// Suspends until `deadline` (by this clock) or until cancelled.
    func sleep(until deadline: Date) async throws
}

/// The wall clock.
public struct SystemClock: EngineClock {
    public init() {}
    public var now: Date { Date() }
    public func sleep(until deadline: Date) async throws {
        let interval = deadline.timeIntervalSinceNow
        if interval > 0 { try await Task.sleep(for: .milliseconds(Int64(interval * 1000))) }
    }
}

/// Randomness, injected so tests are repeatable. Secrets always come from the system CSPRNG.
public protocol RandomSource: Sendable {
    /// A number in [0, 1).
    func unit() -> Double
}

public struct SystemRandom: RandomSource {
    public init() {}
    public func unit() -> Double { Double.random(in: 0..<1) }
}

/// Host ids, injected so tests can predict them.
public protocol IDGenerator: Sendable {
    func hostID() -> String
}

public struct RandomIDGenerator: IDGenerator {
    public init() {}
    public func hostID() -> String {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz")
        return "h-" + String((0..<12).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] })
    }
}
