import Foundation
import OneTouchCore

/// What one event means for Slack. Decided here, without I/O; `SlackStore.ingest` records it in the
/// same transaction that moves the cursor past the event.
struct EventPlan: Sendable, Equatable {
    /// Bot mode: the thread's parent as it should read after this event.
    var parent: SlackMessage?
    /// Replies in the host's thread (bot mode) or messages of their own (webhook mode), in order.
    var messages: [SlackMessage] = []
}

/// Everything the planner reads about the host an event belongs to.
struct EventContext: Sendable {
    var host: HostSnapshot
    /// The host's events up to and including this one.
    var timeline: HostTimeline
    /// Who asked for the host, when it was a person (`admin`, `slack:U…`).
    var requestedBy: String?
    /// The log tail of the host's latest `failed` report, when the event is a failure.
    var failureLog: String?
}

enum SlackPlanner {
    /// The plan for `event`. Bot mode keeps a thread per host (a parent that shows the state, replies
    /// for what people must see); webhook mode posts only ready, failed, paused and destroyed.
    static func plan(_ event: EventRecord, context: EventContext, bot: Bool) -> EventPlan {
        guard let eventID = event.id, let kind = HostTimeline.kind(of: event.toState) else { return EventPlan() }
        let fromKind = event.fromState.flatMap(HostTimeline.kind(of:))
        let host = context.host
        let key = { (what: String) in "\(host.id)-e\(eventID)-\(what)" }
        var plan = EventPlan()
        if bot {
            var parent = Announcements.parent(host, timeline: context.timeline, requestedBy: context.requestedBy)
            parent.key = "\(host.id)-parent"
            plan.parent = parent
            if event.actor != "engine" && event.actor != Drift.actor && event.fromState != nil {
                plan.messages.append(Announcements.command(host, reason: event.reason, actor: event.actor, key: key("command")))
            }
        }
        if event.actor == Drift.actor {
            plan.messages.append(Announcements.drift(host, reason: event.reason, key: key("drift")))
            return plan
        }
        switch kind {
        case .ready where fromKind != .ready:
            plan.messages.append(Announcements.ready(host, timeline: context.timeline, key: key("ready")))
        case .failed where fromKind != .failed, .paused where fromKind != .paused:
            plan.messages.append(
                Announcements.failure(
                    host, paused: kind == .paused, step: event.step, reason: event.reason, logTail: context.failureLog,
                    key: key(kind.rawValue)))
        case .destroyed where fromKind != .destroyed:
            plan.messages.append(Announcements.destroyed(host, key: key("destroyed")))
        default:
            break
        }
        return plan
    }
}
