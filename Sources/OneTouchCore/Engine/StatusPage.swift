import Foundation
import Mustache

/// The live status page (`/status` in `serve`, behind an admin token): the fleet by state, each host's
/// steps as a timeline with their durations, what failed with its reason and the command that fixes
/// it, and the recent events. Built from the database (pure but for the read), rendered by
/// `web/status.html.mustache` with HTML escaping: every text a host or a person wrote shows as text.
public enum StatusPage {
    /// The part of the page that updates: the script fetches it again every 2 s and swaps it in.
    public static func live(store: Store, now: Date) throws -> String {
        let snapshot = try store.statusSnapshot(events: 30)
        return try template("status-live.html.mustache").render(model(snapshot, now: now))
    }

    /// The whole page around `live`.
    public static func page(live: String, signedInAs name: String) throws -> String {
        try template("status.html.mustache").render(["live": live, "user": name, "refreshMilliseconds": 2000] as [String: Any])
    }

    /// The sign-in form; `problem` says why the last try was refused.
    public static func signIn(problem: String?) throws -> String {
        try template("status-sign-in.html.mustache").render(problem.map { ["problem": $0] } ?? [:])
    }

    /// The page's script and style sheet (`web/status.js`, `web/status.css`).
    public static func asset(_ name: String) -> String? { EmbeddedResources.pages[name] }

    static let order: [String] = ["pending", "running", "waiting", "paused", "failed", "destroying", "ready", "destroyed"]

    static func model(_ snapshot: Store.StatusSnapshot, now: Date) -> [String: Any] {
        var counts: [String: Int] = [:]
        for row in snapshot.counts { counts[row.state, default: 0] += row.count }
        let fleet = order.map { ["state": $0, "count": counts[$0] ?? 0] as [String: Any] }
        let attempts = Dictionary(grouping: snapshot.attempts, by: \.hostID)
        // What needs a person first, then what is under way, then what is done.
        func rank(_ host: HostRecord) -> Int {
            if host.state == .failed || host.state == .paused || snapshot.drift[host.id]?.isProblem == true { return 0 }
            return host.state == .ready ? 2 : 1
        }
        let hosts = snapshot.hosts.sorted { (rank($0), $0.name) < (rank($1), $1.name) }.map { host -> [String: Any] in
            var row: [String: Any] = [
                "name": host.name, "role": host.role, "state": host.state.rawValue,
                "updated": ago(now.timeIntervalSince(host.updatedAt)),
                "timeline": timeline(attempts[host.id] ?? [], now: now),
            ]
            if let step = host.step { row["step"] = step.rawValue }
            if let reason = host.reason, host.state == .failed || host.state == .paused {
                row["reason"] = TerminalText.visible(reason)
                if let command = command(in: reason) { row["command"] = command }
            }
            if host.state == .ready, let drift = snapshot.drift[host.id] {
                row["drift"] = drift.rawValue
                if let reason = driftReason(drift) {
                    row["reason"] = reason
                    row["command"] = "onetouch drift"
                }
            }
            return row
        }
        let failures = hosts.filter { $0["reason"] != nil }
        let events = snapshot.events.map { event, name -> [String: Any] in
            var row: [String: Any] = [
                "at": clock(event.at), "host": name, "to": event.toState, "reason": TerminalText.visible(event.reason),
                "actor": event.actor,
            ]
            if let from = event.fromState { row["from"] = from }
            if let step = event.step { row["step"] = step.rawValue }
            return row
        }
        return [
            // A list of one (or none): the section and its heading appear only when something failed.
            "fleet": fleet, "hosts": hosts, "attention": failures.isEmpty ? [] : [["failures": failures]], "events": events,
            "hostCount": snapshot.hosts.count, "updatedAt": clock(now),
        ]
    }

    /// Why a ready host's drift needs a person, if it does.
    static func driftReason(_ drift: DriftState) -> String? {
        guard let advice = drift.advice else { return nil }
        let what = drift == .failing ? "its configuration runs fail" : "silent, no configuration run reported in two pull periods"
        return "configuration drift: \(what); \(advice)"
    }

    /// One entry per step the host went through in this generation, in order: how long it took (or
    /// has taken so far), how many tries, how it ended.
    static func timeline(_ attempts: [AttemptRecord], now: Date) -> [[String: Any]] {
        let byStep = Dictionary(grouping: attempts, by: \.step)
        return Step.allCases.compactMap { step -> [String: Any]? in
            guard let tries = byStep[step]?.sorted(by: { $0.attempt < $1.attempt }), let first = tries.first, let last = tries.last else {
                return nil
            }
            let open = last.finishedAt == nil
            let seconds = (last.finishedAt ?? now).timeIntervalSince(first.startedAt)
            let outcome = open ? "running" : (last.outcome?.rawValue ?? "running")
            var entry: [String: Any] = ["step": step.rawValue, "duration": duration(seconds) + (open ? " so far" : ""), "outcome": outcome]
            if tries.count > 1 { entry["tries"] = "\(tries.count) tries" }
            return entry
        }
    }

    /// The last `onetouch …` command a reason names (the way out it gives).
    static func command(in reason: String) -> String? {
        let parts = reason.split(separator: "`", omittingEmptySubsequences: false)
        return stride(from: 1, to: parts.count, by: 2).map { String(parts[$0]) }.last { $0.hasPrefix("onetouch ") }
    }

    static func duration(_ seconds: TimeInterval) -> String {
        let s = max(0, seconds)
        if s < 10 { return String(format: "%.1f s", s) }
        if s < 120 { return "\(Int(s)) s" }
        return "\(Int(s) / 60) min \(Int(s) % 60) s"
    }

    static func ago(_ seconds: TimeInterval) -> String { duration(seconds) + " ago" }

    static func clock(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.hour, .minute, .second], from: date)
        return String(format: "%02d:%02d:%02d", c.hour ?? 0, c.minute ?? 0, c.second ?? 0)
    }

    /// Parsed once: the live part is rendered every 2 s for every open page.
    static let parsedTemplates: Result<[String: MustacheTemplate], any Error> = Result {
        try EmbeddedResources.pages.filter { $0.key.hasSuffix(".mustache") }.mapValues { try MustacheTemplate(string: $0) }
    }

    static func template(_ name: String) throws -> MustacheTemplate {
        guard let template = try parsedTemplates.get()[name] else { throw UnknownTemplate(name: name) }
        return template
    }

    struct UnknownTemplate: Error, CustomStringConvertible {
        let name: String
        var description: String { "no page template named \(name)" }
    }
}
