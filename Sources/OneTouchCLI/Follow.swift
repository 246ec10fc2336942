import Foundation
import OneTouchCore

/// Follows a host's events live, one line per transition with how long the previous one took.
struct Follow {
    let api: AdminClient
    let name: String
    let json: Bool
    var fromStart = false

    func untilSettled() async throws {
        var after: Int64 = 0
        var previous: Date?
        while true {
            let data = try await api.get("/v1/admin/hosts/\(AdminClient.escape(name))/events?after=\(after)")
            for event in try api.decode([EventView].self, data) {
                after = event.id
                if json {
                    try printJSON(event)
                } else {
                    print(Self.line(event, duration: previous.map { event.at.timeIntervalSince($0) }))
                }
                previous = event.at
            }
            let host = try api.decode(HostView.self, try await api.get("/v1/admin/hosts/\(AdminClient.escape(name))"))
            switch host.state {
            case "ready", "destroyed":
                if !json { print("\(host.name): \(host.state)") }
                return
            case "failed", "paused":
                if !json {
                    print("\(host.name): \(host.state) at \(host.step ?? "-"): \(host.reason ?? "no reason recorded")")
                    if host.reason?.contains("onetouch ") != true { print("continue with: onetouch resume \(host.name)") }
                }
                throw AdminClient.Failure(exitCode: 1, description: "\(host.name) \(host.state) at step \(host.step ?? "-")")
            default:
                try await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    static func line(_ event: EventView, duration: TimeInterval?) -> String {
        let time = ISO8601DateFormatter().string(from: event.at)
        let took = duration.map { String(format: " (+%.1fs)", $0) } ?? ""
        return "\(time) \(event.from ?? "-") -> \(event.to)\(took)  \(event.reason)"
    }
}
