import Foundation

/// Monotonic time as a `Duration` since an arbitrary origin, plus the ability to sleep until a
/// point of that timeline. Injected so tests can drive time by hand.
public protocol MonotonicClock: Sendable {
    func now() -> Duration
    func sleep(until deadline: Duration) async throws
}

/// ``MonotonicClock`` on `ContinuousClock`.
public struct SystemMonotonicClock: MonotonicClock {
    private let origin = ContinuousClock.now

    public init() {}

    public func now() -> Duration { ContinuousClock.now - origin }

    public func sleep(until deadline: Duration) async throws {
        try await ContinuousClock().sleep(until: origin + deadline, tolerance: nil)
    }
}

/// EC2 request-rate buckets (docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html),
/// limited to the actions this client uses.
public enum EC2RateCategory: String, Sendable, Hashable, CaseIterable {
    case runInstances
    case terminateInstances
    case createVolume
    case deleteVolume
    case createTags
    /// Every other mutating action (AttachVolume, DetachVolume, …).
    case mutating
    /// Describe*/Get*/List* with a filter or pagination, and all other non-mutating actions.
    case nonMutating
    /// DescribeInstances / DescribeVolumes (and a few others) without filter and pagination.
    case unfilteredNonMutating

    static let unfilteredSensitiveActions: Set<String> = [
        "DescribeInstances", "DescribeInstanceStatus", "DescribeNetworkInterfaces", "DescribeSecurityGroups",
        "DescribeSnapshots", "DescribeSpotInstanceRequests", "DescribeVolumes",
    ]

    /// The bucket an action draws from. `filteredOrPaginated` is true when the call carries a
    /// `Filter.N` or `MaxResults`/`NextToken` (instance/volume ids alone do not count).
    public static func forAction(_ action: String, filteredOrPaginated: Bool) -> EC2RateCategory {
        switch action {
        case "RunInstances": return .runInstances
        case "TerminateInstances": return .terminateInstances
        case "CreateVolume": return .createVolume
        case "DeleteVolume": return .deleteVolume
        case "CreateTags": return .createTags
        default: break
        }
        let readOnly = ["Describe", "Get", "List", "Search"].contains { action.hasPrefix($0) }
        guard readOnly else { return .mutating }
        if unfilteredSensitiveActions.contains(action) && !filteredOrPaginated { return .unfilteredNonMutating }
        return .nonMutating
    }
}

/// Capacity (burst) and refill rate of one token bucket.
public struct TokenBucketSpec: Sendable, Hashable {
    public var capacity: Double
    public var refillPerSecond: Double

    public init(capacity: Double, refillPerSecond: Double) {
        self.capacity = capacity
        self.refillPerSecond = refillPerSecond
    }
}

/// Client-side token buckets, one per ``EC2RateCategory``, mirroring the account's EC2 buckets
/// so a burst of work is smoothed before AWS answers `RequestLimitExceeded`.
///
/// `acquire` takes a token right away, going into debt if the bucket is empty, and sleeps until
/// the debt is repaid; waiters are therefore served in arrival order. A cancelled waiter returns
/// its token.
public actor EC2RateLimiter {
    public struct Configuration: Sendable, Hashable {
        /// Categories without an entry are not limited.
        public var buckets: [EC2RateCategory: TokenBucketSpec]

        public init(buckets: [EC2RateCategory: TokenBucketSpec]) {
            self.buckets = buckets
        }

        /// The AWS defaults for one account and region (capacity / refill per second).
        public static let awsDefaults = Configuration(buckets: [
            .runInstances: TokenBucketSpec(capacity: 5, refillPerSecond: 2),
            .mutating: TokenBucketSpec(capacity: 50, refillPerSecond: 5),
            .createVolume: TokenBucketSpec(capacity: 100, refillPerSecond: 5),
            .terminateInstances: TokenBucketSpec(capacity: 100, refillPerSecond: 5),
            .deleteVolume: TokenBucketSpec(capacity: 100, refillPerSecond: 5),
            .createTags: TokenBucketSpec(capacity: 100, refillPerSecond: 10),
            .nonMutating: TokenBucketSpec(capacity: 100, refillPerSecond: 20),
            .unfilteredNonMutating: TokenBucketSpec(capacity: 50, refillPerSecond: 10),
        ])
    }

    private struct Bucket {
        let spec: TokenBucketSpec
        var tokens: Double
        var updatedAt: Duration

        mutating func refill(at now: Duration) {
            let elapsed = Self.seconds(now - updatedAt)
            if elapsed > 0 { tokens = min(spec.capacity, tokens + elapsed * spec.refillPerSecond) }
            updatedAt = max(updatedAt, now)
        }

        static func seconds(_ duration: Duration) -> Double {
            Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        }
    }

    public let configuration: Configuration
    private let clock: any MonotonicClock
    private var buckets: [EC2RateCategory: Bucket] = [:]
    /// Told how long each call that had to wait waited (seconds), for `/metrics`.
    private let waited: (@Sendable (EC2RateCategory, Double) -> Void)?

    public init(
        configuration: Configuration = .awsDefaults, clock: any MonotonicClock = SystemMonotonicClock(),
        waited: (@Sendable (EC2RateCategory, Double) -> Void)? = nil
    ) {
        self.configuration = configuration
        self.clock = clock
        self.waited = waited
        let start = clock.now()
        for (category, spec) in configuration.buckets {
            buckets[category] = Bucket(spec: spec, tokens: spec.capacity, updatedAt: start)
        }
    }

    /// Waits until a token of `category` is available and takes it.
    public func acquire(_ category: EC2RateCategory) async throws {
        try Task.checkCancellation()
        guard var bucket = buckets[category], bucket.spec.refillPerSecond > 0 else { return }
        let now = clock.now()
        bucket.refill(at: now)
        bucket.tokens -= 1
        buckets[category] = bucket
        guard bucket.tokens < 0 else { return }

        let wait = -bucket.tokens / bucket.spec.refillPerSecond
        do {
            try await clock.sleep(until: now + .nanoseconds(Int64((wait * 1e9).rounded(.up))))
        } catch {
            buckets[category]?.tokens += 1
            throw error
        }
        waited?(category, wait)
    }

    public func acquire(action: String, filteredOrPaginated: Bool) async throws {
        try await acquire(EC2RateCategory.forAction(action, filteredOrPaginated: filteredOrPaginated))
    }

    /// Tokens currently in the bucket (negative while callers are waiting); `nil` if unlimited.
    public func availableTokens(_ category: EC2RateCategory) -> Double? {
        guard var bucket = buckets[category] else { return nil }
        bucket.refill(at: clock.now())
        return bucket.tokens
    }
}
