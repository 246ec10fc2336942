import Foundation
import OneTouchCore
import Prometheus
import Synchronization

/// `/metrics` in Prometheus' text format: what the engine, the store and the adapters recorded (see
/// `Telemetry`) plus what is read at each scrape, so it always matches the database: hosts by state
/// and step (`onetouch_hosts`), ready hosts by drift state (`onetouch_hosts_drift`), cloud differences
/// (`onetouch_cloud_drift_differences`), and the engine's queue (`onetouch_engine_due_hosts`: due and waiting
/// for a slot; `onetouch_engine_hosts_in_flight`).
public final class MetricsEndpoint: Sendable {
    let registry = PrometheusCollectorRegistry()
    public let telemetry: Telemetry
    /// Set once the engine exists (it needs the store, which needs `telemetry`).
    private let sources = Mutex<(store: Store, engine: Engine)?>(nil)
    /// Label sets of `onetouch_hosts` emitted before: a state and step no host is in any more reads 0.
    private let seen = Mutex<Set<[String]>>([])

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        func seconds(_ values: [Double]) -> [Duration] { values.map { .nanoseconds(Int64($0 * 1e9)) } }
        // A step of a real host takes from milliseconds (a launch) to many minutes (a configuration pull).
        factory.durationHistogramBuckets[Telemetry.stepDuration] = seconds([0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600])
        factory.durationHistogramBuckets[Telemetry.externalCallDuration] = seconds([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
        factory.durationHistogramBuckets[Telemetry.rateLimiterWait] = seconds([0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30])
        factory.durationHistogramBuckets[Telemetry.commitDuration] = seconds([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
        ])
        telemetry = Telemetry(factory: factory)
    }

    public func attach(store: Store, engine: Engine) { sources.withLock { $0 = (store, engine) } }

    public func scrape() async throws -> [UInt8] {
        guard let (store, engine) = sources.withLock({ $0 }) else { return registry.emitToBuffer() }
        let hosts = Self.descriptor("onetouch_hosts", "Hosts by state and step (step is empty when the state has none)")
        let counts = try store.hostCounts()
        let now = Set(counts.map { [$0.state, $0.step] })
        let gone = seen.withLock { seen in
            defer { seen.formUnion(now) }
            return seen.subtracting(now)
        }
        for labels in gone { registry.makeGauge(descriptor: hosts, labels: [("state", labels[0]), ("step", labels[1])]).set(to: 0.0) }
        for row in counts {
            registry.makeGauge(descriptor: hosts, labels: [("state", row.state), ("step", row.step)]).set(to: Double(row.count))
        }
        let drift = try store.driftCounts()
        let driftHosts = Self.descriptor(
            "onetouch_hosts_drift", "Ready hosts by configuration drift state (none: no configuration run reported yet)")
        for state in DriftState.allCases.map(\.rawValue) + ["none"] {
            registry.makeGauge(descriptor: driftHosts, labels: [("state", state)]).set(to: Double(drift.states[state] ?? 0))
        }
        registry.makeGauge(
            descriptor: Self.descriptor(
                "onetouch_cloud_drift_differences", "Differences between ready hosts' cloud resources and the configuration")
        ).set(to: Double(drift.cloudDifferences))
        let queue = await engine.queue()
        registry.makeGauge(
            descriptor: Self.descriptor("onetouch_engine_due_hosts", "Hosts whose next step is due and wait for a free slot")
        )
        .set(to: Double(queue.due))
        registry.makeGauge(descriptor: Self.descriptor("onetouch_engine_hosts_in_flight", "Hosts whose step is running now"))
            .set(to: Double(queue.inFlight))
        return registry.emitToBuffer()
    }

    static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }
}
