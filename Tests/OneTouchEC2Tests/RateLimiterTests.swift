import Foundation
import OneTouchEC2
import Testing

@Suite("Client-side EC2 rate limiting")
struct RateLimiterTests {
    @Test func burstIsFreeThenCallsAreSpacedByTheRefillRate() async throws {
        let clock = ManualClock()
        let limiter = EC2RateLimiter(clock: clock)  // RunInstances: 5 burst, 2 per second
        for _ in 0..<5 { try await limiter.acquire(.runInstances) }
        #expect(clock.sleeps.isEmpty)
        for _ in 0..<3 { try await limiter.acquire(.runInstances) }
        #expect(clock.sleeps == [.milliseconds(500), .milliseconds(1000), .milliseconds(1500)])
    }

    @Test func concurrentWaitersAreServedInOrderWithoutOvershoot() async throws {
        let clock = ManualClock()
        let limiter = EC2RateLimiter(
            configuration: .init(buckets: [.mutating: TokenBucketSpec(capacity: 2, refillPerSecond: 4)]), clock: clock)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<6 { group.addTask { try await limiter.acquire(.mutating) } }
            try await group.waitForAll()
        }
        // 2 from the burst, then one every 250 ms — whatever order the tasks arrived in.
        #expect(clock.sleeps.sorted() == [.milliseconds(250), .milliseconds(500), .milliseconds(750), .milliseconds(1000)])
    }

    @Test func tokensRefillWhileIdleUpToCapacity() async throws {
        let clock = ManualClock()
        let limiter = EC2RateLimiter(
            configuration: .init(buckets: [.createTags: TokenBucketSpec(capacity: 3, refillPerSecond: 10)]), clock: clock)
        for _ in 0..<3 { try await limiter.acquire(.createTags) }
        #expect(await limiter.availableTokens(.createTags) == 0)
        clock.advance(by: .milliseconds(150))
        let refilled = try #require(await limiter.availableTokens(.createTags))
        #expect(abs(refilled - 1.5) < 1e-9)
        clock.advance(by: .seconds(60))
        #expect(await limiter.availableTokens(.createTags) == 3)
        for _ in 0..<3 { try await limiter.acquire(.createTags) }
        #expect(clock.sleeps.isEmpty)
    }

    @Test func unconfiguredCategoryIsNotLimited() async throws {
        let clock = ManualClock()
        let limiter = EC2RateLimiter(configuration: .init(buckets: [:]), clock: clock)
        for _ in 0..<1000 { try await limiter.acquire(.nonMutating) }
        #expect(clock.sleeps.isEmpty)
        #expect(await limiter.availableTokens(.nonMutating) == nil)
    }

    @Test func cancelledWaiterReturnsItsToken() async throws {
        let limiter = EC2RateLimiter(
            configuration: .init(buckets: [.deleteVolume: TokenBucketSpec(capacity: 1, refillPerSecond: 0.001)]),
            clock: SystemMonotonicClock())
        try await limiter.acquire(.deleteVolume)
        let waiter = Task { try await limiter.acquire(.deleteVolume) }
        // Wait (a few ms at most) until the waiter has taken its token on credit and sleeps.
        for _ in 0..<1000 where (await limiter.availableTokens(.deleteVolume) ?? 0) > -0.5 {
            try await Task.sleep(for: .milliseconds(1))
        }
        #expect(try #require(await limiter.availableTokens(.deleteVolume)) < -0.5)
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        let tokens = try #require(await limiter.availableTokens(.deleteVolume))
        #expect(tokens > -0.5 && tokens < 0.5)
    }

    @Test func awsDefaultsMatchTheThrottlingDocumentation() {
        let buckets = EC2RateLimiter.Configuration.awsDefaults.buckets
        #expect(buckets[.runInstances] == TokenBucketSpec(capacity: 5, refillPerSecond: 2))
        #expect(buckets[.mutating] == TokenBucketSpec(capacity: 50, refillPerSecond: 5))
        #expect(buckets[.createVolume] == TokenBucketSpec(capacity: 100, refillPerSecond: 5))
        #expect(buckets[.terminateInstances] == TokenBucketSpec(capacity: 100, refillPerSecond: 5))
        #expect(buckets[.deleteVolume] == TokenBucketSpec(capacity: 100, refillPerSecond: 5))
        #expect(buckets[.createTags] == TokenBucketSpec(capacity: 100, refillPerSecond: 10))
        #expect(buckets[.nonMutating] == TokenBucketSpec(capacity: 100, refillPerSecond: 20))
        #expect(buckets[.unfilteredNonMutating] == TokenBucketSpec(capacity: 50, refillPerSecond: 10))
    }

    @Test(arguments: [
        ("RunInstances", false, EC2RateCategory.runInstances),
        ("TerminateInstances", false, .terminateInstances),
        ("CreateVolume", false, .createVolume),
        ("DeleteVolume", false, .deleteVolume),
        ("CreateTags", false, .createTags),
        ("AttachVolume", false, .mutating),
        ("DescribeInstances", false, .unfilteredNonMutating),
        ("DescribeInstances", true, .nonMutating),
        ("DescribeVolumes", false, .unfilteredNonMutating),
        ("DescribeVolumes", true, .nonMutating),
        ("DescribeInstanceAttribute", false, .nonMutating),
    ])
    func actionsMapToTheirBucket(action: String, filteredOrPaginated: Bool, category: EC2RateCategory) {
        #expect(EC2RateCategory.forAction(action, filteredOrPaginated: filteredOrPaginated) == category)
    }
}
