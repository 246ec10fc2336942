import Foundation
import OneTouchCore

/// A host's history read from its events: where it is, since when, and how long each provisioning
/// step took. Pure: built from event rows, no clock.
struct HostTimeline: Sendable, Equatable {
    private(set) var createdAt: Date
    private(set) var kind: HostState.Kind = .pending
    private(set) var step: Step?
    /// When the latest event happened.
    private(set) var lastAt: Date
    /// Time spent running or waiting in each provisioning step (retries and generations add up);
    /// time spent failed or paused, waiting for a person, is not counted.
    private(set) var stepSeconds: [Step: TimeInterval] = [:]

    init(createdAt: Date) {
        self.createdAt = createdAt
        lastAt = createdAt
    }

    init(createdAt: Date, events: [EventRecord]) {
        self.init(createdAt: createdAt)
        for event in events { apply(event) }
    }

    /// The state kind of an event's `to_state` text, e.g. `running(config-pull)`.
    static func kind(of state: String) -> HostState.Kind? {
        HostState.Kind(rawValue: String(state.prefix { $0 != "(" }))
    }

    mutating func apply(_ event: EventRecord) {
        guard let newKind = Self.kind(of: event.toState) else { return }
        if kind == .running || kind == .waiting, let step, !step.isTeardown {
            stepSeconds[step, default: 0] += max(0, event.at.timeIntervalSince(lastAt))
        }
        kind = newKind
        step = event.step
        lastAt = event.at
    }

    /// Seconds from `create` to the latest event.
    var elapsed: TimeInterval { lastAt.timeIntervalSince(createdAt) }

    /// The provisioning step that took longest, and how long.
    var slowest: (step: Step, seconds: TimeInterval)? {
        stepSeconds.max { a, b in a.value < b.value || (a.value == b.value && a.key > b.key) }.map { ($0.key, $0.value) }
    }
}
