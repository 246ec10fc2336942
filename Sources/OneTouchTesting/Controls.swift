import Foundation
import Logging
import OneTouchCore
import Synchronization

/// A clock that moves only when told to.
public final class ManualClock: EngineClock, Sendable {
    private let current: Mutex<Date>
    private let sleepCalls = Mutex(0)
    public init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) { current = Mutex(start) }
    /// How often someone asked to sleep (a loop that spins asks thousands of times a second).
    public var sleeps: Int { sleepCalls.withLock { $0 } }
    public var now: Date { current.withLock { $0 } }
    public func advance(by duration: Duration) { current.withLock { $0 = $0.addingTimeInterval(duration.seconds) } }
    public func set(_ date: Date) { current.withLock { $0 = date } }
    /// Sleeps in real time until the manual time passes `deadline` (polling), or cancellation.
    public func sleep(until deadline: Date) async throws {
        sleepCalls.withLock { $0 += 1 }
        while now < deadline { try await Task.sleep(for: .milliseconds(5)) }
    }
}

/// Repeatable randomness (SplitMix64).
public final class SeededRandom: RandomSource, Sendable {
    private let state: Mutex<UInt64>
    public init(seed: UInt64) { state = Mutex(seed) }
    public func unit() -> Double {
        state.withLock { s in
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Double(z >> 11) / Double(1 << 53)
        }
    }
}

/// Host ids h-0001, h-0002, …
public final class SequentialIDs: IDGenerator, Sendable {
    private let next = Mutex(0)
    private let prefix: String
    public init(prefix: String = "h-") { self.prefix = prefix }
    public func hostID() -> String {
        next.withLock { n in
            n += 1
            return prefix + String(format: "%04d", n)
        }
    }
}

/// Keeps every log line in memory, for assertions (e.g. that no secret was logged).
public final class LogCapture: Sendable {
    private let lines = Mutex<[String]>([])
    public init() {}
    public var all: [String] { lines.withLock { $0 } }
    func append(_ line: String) { lines.withLock { $0.append(line) } }

    public func logger(label: String = "test", level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: label) { _ in CapturingHandler(capture: self) }
        logger.logLevel = level
        return logger
    }

    struct CapturingHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            capture.append(
                "\(event.level) \(event.message) \(merged.sorted { $0.key < $1.key }.map { "\($0)=\($1)" }.joined(separator: " "))")
        }
    }
}
