import Foundation

/// `GET /readyz`: whether this `serve` can do its work now, and what is wrong when it cannot. Each
/// check says what it found; `ready` is false when any check that matters failed. The steps' last
/// errors are shown, not judged: a cloud that failed once is not a reason to stop sending work.
public struct Readiness: Sendable, Codable, Equatable {
    public struct Check: Sendable, Codable, Equatable {
        public var name: String
        public var ok: Bool
        public var detail: String
    }
    public struct StepErrorNote: Sendable, Codable, Equatable {
        public var step: String
        public var error: String
        public var at: String
    }
    public var ready: Bool
    public var checks: [Check]
    public var lastErrors: [StepErrorNote]
}

/// Computes `Readiness` from the database, the lease and the engine's loop.
public struct ReadinessProbe: Sendable {
    let store: Store
    let engine: Engine
    let clock: any EngineClock
    /// The loop looks at its schedule at least every `idleInterval` (5 s); three times that plus the
    /// lease renewal's own time is "not ticking".
    let maxTickAge: TimeInterval

    public init(store: Store, engine: Engine, clock: any EngineClock, maxTickAge: TimeInterval = 30) {
        self.store = store
        self.engine = engine
        self.clock = clock
        self.maxTickAge = maxTickAge
    }

    public func check() async -> Readiness {
        let now = clock.now
        let health = engine.health
        var checks: [Readiness.Check] = []

        do {
            try await store.probeWrite(now: now)
            checks.append(.init(name: "database", ok: true, detail: "takes writes"))
        } catch {
            checks.append(.init(name: "database", ok: false, detail: "cannot write: \(error)"))
        }

        do {
            switch try store.lease(Engine.leaseName) {
            case let (owner, expires)? where owner == health.owner && expires > now:
                checks.append(.init(name: "lease", ok: true, detail: "held by this process until \(APIDates.format(expires))"))
            case let (owner, expires)? where expires > now:
                checks.append(
                    .init(
                        name: "lease", ok: false,
                        detail: "held by another process (\(owner)) until \(APIDates.format(expires)): this one drives no host"))
            case let (owner, expires)?:
                checks.append(
                    .init(name: "lease", ok: false, detail: "expired at \(APIDates.format(expires)) (last held by \(owner))"))
            case nil:
                checks.append(.init(name: "lease", ok: false, detail: "no process holds it"))
            }
        } catch {
            checks.append(.init(name: "lease", ok: false, detail: "cannot read it: \(error)"))
        }

        if !health.started {
            checks.append(.init(name: "engine", ok: false, detail: "not started"))
        } else if let paused = health.paused {
            checks.append(.init(name: "engine", ok: false, detail: "paused: \(paused)"))
        } else if let tick = health.lastTick, now.timeIntervalSince(tick) <= maxTickAge {
            checks.append(
                .init(name: "engine", ok: true, detail: "looked at its schedule \(Self.seconds(now.timeIntervalSince(tick))) ago"))
        } else {
            let age = health.lastTick.map { "last looked at its schedule \(Self.seconds(now.timeIntervalSince($0))) ago" } ?? "never ticked"
            checks.append(.init(name: "engine", ok: false, detail: "stuck: \(age)"))
        }

        let errors = health.lastErrors.sorted { $0.value.at > $1.value.at }.map {
            Readiness.StepErrorNote(step: $0.key.rawValue, error: $0.value.error, at: APIDates.format($0.value.at))
        }
        return Readiness(ready: checks.allSatisfy(\.ok), checks: checks, lastErrors: errors)
    }

    static func seconds(_ interval: TimeInterval) -> String { String(format: "%.1f s", max(0, interval)) }
}
