import Foundation
import OneTouchCLI
import OneTouchCore
import OneTouchTesting
import Testing

@Suite("/metrics")
struct MetricsTests {
    /// Samples by series (`name{labels}` as printed), checking every line against the text format.
    func samples(_ text: String) throws -> [String: Double] {
        var samples: [String: Double] = [:]
        let line = try Regex(#"^([a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?) (\S+)$"#)
        for row in text.split(separator: "\n") where !row.hasPrefix("#") {
            guard let match = try line.wholeMatch(in: String(row)) else {
                Issue.record("not a sample line: \(row)")
                continue
            }
            samples[String(match.output[1].substring ?? "")] = Double(String(match.output[3].substring ?? ""))
        }
        #expect(text.hasSuffix("\n"))
        return samples
    }

    @Test func metricsMatchTheDatabaseAfterTwentyHostsAndFiveDestroys() async throws {
        let metrics = MetricsEndpoint()
        let bed = try EngineTestBed(telemetry: metrics.telemetry)
        defer { bed.remove() }
        metrics.attach(store: bed.store, engine: bed.engine)
        for i in 1...20 { try await bed.create("web-\(i)") }
        try await bed.settle()

        var s = try samples(String(decoding: try await metrics.scrape(), as: UTF8.self))
        #expect(s[#"onetouch_hosts{state="ready",step=""}"#] == 20)
        #expect(s[#"onetouch_step_duration_seconds_count{step="provision",outcome="succeeded"}"#] == 20)
        #expect(s[#"onetouch_step_duration_seconds_count{step="complete",outcome="succeeded"}"#] == 20)
        #expect(s[#"onetouch_host_reports_total{stage="booted"}"#] == 20)
        #expect(s[#"onetouch_host_reports_total{stage="configured"}"#] == 20)
        #expect(s[#"onetouch_external_call_duration_seconds_count{adapter="fake",action="launch"}"#] == Double(bed.cloud.calls("launch")))
        #expect(s[#"onetouch_external_call_duration_seconds_count{adapter="fake",action="preregister"}"#] == 20)
        #expect((s["onetouch_sqlite_commit_seconds_count"] ?? 0) >= Double(bed.store.commits))
        #expect(s["onetouch_engine_hosts_in_flight"] == 0 && s["onetouch_engine_due_hosts"] == 0)

        for i in 1...5 { _ = try await bed.service.destroy("web-\(i)", keepVolume: false, actor: "test") }
        try await bed.settle()
        s = try samples(String(decoding: try await metrics.scrape(), as: UTF8.self))
        let ready = try bed.store.hosts(state: .ready).count
        #expect(s[#"onetouch_hosts{state="ready",step=""}"#] == Double(ready) && ready == 15)
        #expect(s[#"onetouch_hosts{state="destroyed",step=""}"#] == 5)
        #expect(s[#"onetouch_external_call_duration_seconds_count{adapter="fake",action="terminate"}"#] == 5)
    }

    @Test func aStateNoHostIsInAnyMoreReadsZero() async throws {
        let metrics = MetricsEndpoint()
        let bed = try EngineTestBed(telemetry: metrics.telemetry)
        defer { bed.remove() }
        metrics.attach(store: bed.store, engine: bed.engine)
        try await bed.create("web-01")
        var s = try samples(String(decoding: try await metrics.scrape(), as: UTF8.self))
        #expect(s[#"onetouch_hosts{state="pending",step=""}"#] == 1)
        try await bed.settle()
        s = try samples(String(decoding: try await metrics.scrape(), as: UTF8.self))
        #expect(s[#"onetouch_hosts{state="pending",step=""}"#] == 0, "not left at its last value")
        #expect(s[#"onetouch_hosts{state="ready",step=""}"#] == 1)
    }

    @Test func readyHostsAreCountedByDriftStateAndCloudDifferences() async throws {
        let metrics = MetricsEndpoint()
        let bed = try EngineTestBed(telemetry: metrics.telemetry)
        defer { bed.remove() }
        metrics.attach(store: bed.store, engine: bed.engine)
        let drift = bed.drift()
        var credentials: [String: Secret] = [:]
        for name in ["web-01", "web-02", "web-03"] {
            let host = try await bed.create(name)
            credentials[host.id] = try await drift.issueCredential(hostID: host.id, token: try bed.tokenFor(host).reveal())
        }
        try await bed.settle()
        let hosts = try bed.store.hosts(state: .ready)
        _ = try await drift.report(hostID: hosts[0].id, credential: credentials[hosts[0].id]!.reveal(), .init(exitStatus: 2))
        _ = try await drift.report(hostID: hosts[1].id, credential: credentials[hosts[1].id]!.reveal(), .init(exitStatus: 0))
        bed.cloud.change(instance: hosts[1].decodedFacts.instanceID ?? "") { $0.instanceType = "m5.large" }
        _ = try await drift.checkCloud()
        let s = try samples(String(decoding: try await metrics.scrape(), as: UTF8.self))
        #expect(s[#"onetouch_hosts_drift{state="failing"}"#] == 1)
        #expect(s[#"onetouch_hosts_drift{state="in-sync"}"#] == 1)
        #expect(s[#"onetouch_hosts_drift{state="none"}"#] == 1)
        #expect(s[#"onetouch_hosts_drift{state="silent"}"#] == 0)
        #expect(s["onetouch_cloud_drift_differences"] == 1)
    }
}
