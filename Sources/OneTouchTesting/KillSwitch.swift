import Foundation
import OneTouchCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Test tooling for the end-to-end crash tests: `ONETOUCH_TEST_KILL_AT=STEP:POINT[:N]` makes
/// `onetouch-crashtest serve` SIGKILL itself the N-th time (default 1) any host reaches that crash point
/// of that step (`CrashPoint`: attempt-committed, external-call-made, result-committed). A real SIGKILL
/// at an exact step boundary, which a timer from outside cannot hit. It lives here, with the fakes, so
/// that the `onetouch` product does not contain it: only the test executable `onetouch-crashtest` reads
/// the variable.
public struct KillSwitch: Sendable {
    public let step: Step
    public let point: CrashPoint
    public let nth: Int

    public static let variable = "ONETOUCH_TEST_KILL_AT"

    /// Nil when the variable is unset; an error that names the accepted form when it is malformed.
    public static func parse(_ environment: [String: String]) throws -> KillSwitch? {
        guard let value = environment[variable], !value.isEmpty else { return nil }
        let parts = value.split(separator: ":").map(String.init)
        guard parts.count == 2 || parts.count == 3, let step = Step(rawValue: parts[0]), let point = CrashPoint(rawValue: parts[1]),
            let nth = parts.count == 3 ? Int(parts[2]) : 1, nth >= 1
        else {
            throw ConfigurationError(
                file: "environment", path: variable,
                reason:
                    "\(variable)=\(value) is not STEP:POINT[:N]; steps: \(Step.allCases.map(\.rawValue).joined(separator: ", ")); points: \(CrashPoint.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        return KillSwitch(step: step, point: point, nth: nth)
    }

    /// The engine's crash hook: counts arrivals and kills the process at the N-th.
    public func hook() -> @Sendable (Step, CrashPoint) throws -> Void {
        let arrivals = Mutex(0)
        let (step, point, nth) = (self.step, self.point, self.nth)
        return { reached, at in
            guard reached == step, at == point else { return }
            if arrivals.withLock({ count in
                count += 1
                return count == nth
            }) {
                kill(getpid(), SIGKILL)
            }
        }
    }
}
