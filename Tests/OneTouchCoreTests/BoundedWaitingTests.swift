import Foundation
import OneTouchTesting
import Testing

@testable import OneTouchCore

@Suite("Throttling spends no attempt")
struct ThrottlingTests {
    @Test func throttlingLongerThanTheRetryBudgetNeverFailsTheHost() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        // Five attempts and ten minutes are the test bed's budget; forty throttled launches outlast both.
        bed.cloud.faults.inject(.throttled(retryAfter: .seconds(20)), into: "launch", times: 40)
        let created = try await bed.create("web-01")
        try await bed.settle()
        let host = try bed.host("web-01")
        #expect(host.hostState == .ready, "\(host.reason ?? "")")
        #expect(bed.cloud.calls("launch") == 41)
        #expect(bed.cloud.instancesCreated == 1)
        let attempts = try bed.store.attempts(hostID: created.id, step: .provision)
        #expect(attempts.count == 1, "throttled tries run under one attempt")
        #expect(ThrottleNotes(decoding: attempts[0].data).count == 40)
        let throttleEvents = try bed.store.events(hostID: created.id).filter { $0.reason.contains("throttled") }
        #expect(throttleEvents.count == 1, "the first throttle of an attempt is an event, the others are not")
    }

    @Test func aThrottledStepWaitsAtLeastWhatTheServiceAsked() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.cloud.faults.inject(.throttled(retryAfter: .seconds(45)), into: "launch")
        try await bed.create("web-01")
        let start = bed.clock.now
        await bed.engine.runUntilIdle()
        let due = try #require(await bed.engine.nextDue())
        #expect(due.timeIntervalSince(start) >= 45)
        #expect(try bed.host("web-01").hostState == .running(.provision))
    }

    @Test func transientErrorsAfterLongThrottlingStillGetTheirWholeBudget() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        // 40 × 30 s of throttling is twice the ten-minute budget; the transient errors after it are retried.
        bed.cloud.faults.inject(.throttled(retryAfter: .seconds(30)), into: "launch", times: 40)
        bed.cloud.faults.inject(.transient, into: "launch", times: 2)
        try await bed.create("web-01")
        try await bed.settle()
        let host = try bed.host("web-01")
        #expect(host.hostState == .ready, "\(host.reason ?? "")")
        #expect(bed.cloud.instancesCreated == 1)
    }

    @Test func retryPolicyCountsOnlyTheCurrentRunAndNotThrottledTime() {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        func attempt(_ n: Int64, at offset: TimeInterval, _ outcome: AttemptRecord.Outcome?, data: String = "{}") -> AttemptRecord {
            AttemptRecord(
                id: n, hostID: "h", step: .provision, generation: 1, attempt: Int(n), idempotencyKey: "k",
                startedAt: start.addingTimeInterval(offset), finishedAt: nil, deadline: nil, outcome: outcome, errorClass: nil,
                errorMessage: nil, data: data)
        }
        var throttled = ThrottleNotes(decoding: "{}")
        throttled.count = 3
        throttled.waited = 100
        let current = attempt(5, at: 400, nil, data: throttled.encoded(into: "{}"))
        let history = [
            attempt(1, at: 0, .retrying), attempt(2, at: 10, .paused), attempt(3, at: 200, .retrying), attempt(4, at: 300, .retrying),
            current,
        ]
        let spent = RetryPolicy.spent(history: history, current: current, now: start.addingTimeInterval(600))
        #expect(spent.attempts == 3, "attempts 3, 4 and 5: the pause ended the run before")
        #expect(spent.elapsed == 300, "600 − 200 s since the run's first attempt, less 100 s of throttling")
    }

    @Test func throttleNotesKeepOtherKeysOfTheAttemptData() {
        var notes = ThrottleNotes(decoding: #"{"other":"kept"}"#)
        notes.count = 2
        notes.waited = 1.5
        let encoded = notes.encoded(into: #"{"other":"kept"}"#)
        #expect(encoded.contains(#""other":"kept""#))
        #expect(ThrottleNotes(decoding: encoded) == notes)
    }
}

@Suite("Pauses re-checked quietly")
struct QuietRecheckTests {
    @Test func aPauseReCheckedForAnHourWritesTheFirstPauseAndTheOutcomeOnly() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.cloud.faults.inject(.needsHumanRecheck("RequestExpired: Request has expired.", after: .seconds(60)), into: "launch", times: 60)
        let created = try await bed.create("web-01")
        try await bed.settle()
        let host = try bed.host("web-01")
        #expect(host.hostState == .ready, "\(host.reason ?? "")")
        #expect(bed.cloud.calls("launch") == 61)
        let events = try bed.store.events(hostID: created.id)
        #expect(events.filter { $0.toState.hasPrefix("paused") }.count == 1, "\(events.map(\.toState))")
        let out = try #require(events.first { $0.fromState?.hasPrefix("paused") == true })
        #expect(out.toState == "running(preregister)")
        #expect(out.reason.contains("the cause of the pause has cleared"))
        #expect(events.count < 15, "\(events.count) events for one host")
        // Every re-check is an attempt row, each ended `paused` but the one that worked.
        let attempts = try bed.store.attempts(hostID: created.id, step: .provision)
        #expect(attempts.count == 61)
        #expect(attempts.dropLast().allSatisfy { $0.outcome == .paused })
    }

    @Test func aReportWhilePausedDoesNotCancelTheReCheck() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.cloud.faults.inject(.needsHumanRecheck("AuthFailure: credentials expired", after: .seconds(60)), into: "attachVolume")
        try await bed.create("web-01")
        for _ in 0..<20 {
            await bed.engine.runUntilIdle()
            try await bed.simulateHosts()
        }
        let paused = try bed.host("web-01")
        #expect(paused.hostState.kind == .paused)
        let recheck = try #require(paused.nextAt)
        // The host says something while paused (a log line, a late report): it wakes the engine.
        _ = try await bed.service.report(hostID: paused.id, token: try bed.tokenFor(paused).reveal(), .init(stage: .booted))
        await bed.engine.runUntilIdle()
        #expect(await bed.engine.nextDue() == recheck, "the re-check is still due")
        try await bed.settle()
        #expect(try bed.host("web-01").hostState == .ready)
    }

    @Test func aHostResumedByItsReCheckAfterALongPauseGetsAFreshRetryBudget() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        // Paused for 40 minutes (four times the ten-minute budget, eight times five attempts), then two
        // transient errors: they are retried, not taken for a spent budget.
        bed.cloud.faults.inject(.needsHumanRecheck("RequestExpired", after: .seconds(60)), into: "launch", times: 40)
        bed.cloud.faults.inject(.transient, into: "launch", times: 2)
        try await bed.create("web-01")
        try await bed.settle()
        let host = try bed.host("web-01")
        #expect(host.hostState == .ready, "\(host.reason ?? "")")
    }

    @Test func aReCheckThatMeetsAPermanentErrorFailsTheHostWithOneEvent() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.cloud.faults.inject(.needsHumanRecheck("RequestExpired", after: .seconds(60)), into: "launch", times: 3)
        bed.cloud.faults.inject(.permanent("InvalidAMIID.NotFound"), into: "launch")
        let created = try await bed.create("web-01")
        try await bed.settle()
        let host = try bed.host("web-01")
        #expect(host.hostState.kind == .failed)
        let events = try bed.store.events(hostID: created.id).map { "\($0.fromState ?? "")→\($0.toState)" }
        #expect(events.suffix(2) == ["running(provision)→paused(provision)", "paused(provision)→failed(provision)"], "\(events)")
    }
}

@Suite("Polls have a time budget")
struct PollBudgetTests {
    @Test func anInstanceStuckPendingFailsTheHostWithAClearReason() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.cloud.setInstancesStayPending(true)
        try await bed.create("web-01")
        try await bed.settle()
        let reason = try bed.failedReason("web-01", at: .provision)
        #expect(reason.contains("is still pending without an address after 10m"), "\(reason)")
        #expect(reason.contains("onetouch retry web-01 --from provision"))
        #expect(bed.cloud.instancesCreated == 1)
    }

    @Test func aVolumeStuckCreatingFailsTheHostWithAClearReason() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.cloud.setVolumesStayCreating(true)
        try await bed.create("web-01")
        try await bed.settle()
        let reason = try bed.failedReason("web-01", at: .attachVolume)
        #expect(reason.contains("is still creating after 10m"), "\(reason)")
        #expect(bed.cloud.volumesCreated == 1)
    }

    @Test func aVolumeStuckDetachingFailsTheTeardownWithAClearReasonAndResumes() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        try await bed.create("web-01")
        try await bed.settle()
        #expect(try bed.host("web-01").hostState == .ready)
        bed.cloud.setVolumesStayAttached(true)
        _ = try await bed.service.destroy("web-01", keepVolume: false, actor: "test")
        try await bed.settle()
        let reason = try bed.failedReason("web-01", at: .deleteVolume)
        #expect(reason.contains("still attached"), "\(reason)")
        #expect(reason.contains("onetouch resume web-01"))
        #expect(bed.cloud.allVolumes.count == 1, "nothing was deleted while attached")
    }

}
