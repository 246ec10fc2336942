import Foundation
import Testing

@testable import OneTouchCore

@Suite("Scheduler")
struct SchedulerTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func ofTheDueHostsTheOneFurthestAlongGoesFirstThenTheEarliest() async {
        let scheduler = Scheduler()
        // Hundreds of new hosts due since long ago, then one that booted: it must not wait behind them.
        for i in 0..<300 { await scheduler.schedule("new-\(i)", at: t0, priority: 0) }
        await scheduler.schedule("booted", at: t0.addingTimeInterval(60), priority: Engine.woken)
        await scheduler.schedule("attaching", at: t0.addingTimeInterval(30), priority: Engine.priority(.running(.attachVolume)))
        let now = t0.addingTimeInterval(61)
        #expect(await scheduler.takeDue(now: now, limit: 1) == ["booted"])
        #expect(await scheduler.takeDue(now: now, limit: 1) == ["attaching"])
        #expect(await scheduler.takeDue(now: now, limit: 500).count == 300)
    }

    @Test func aHostNotYetDueIsNotTakenWhateverItsPriority() async {
        let scheduler = Scheduler()
        await scheduler.schedule("later", at: t0.addingTimeInterval(10), priority: Engine.woken)
        await scheduler.schedule("now", at: t0, priority: 0)
        #expect(await scheduler.takeDue(now: t0, limit: 5) == ["now"])
    }

    @Test func rescheduledLaterKeepsTheEarlierTimeAndTheHigherPriority() async {
        let scheduler = Scheduler()
        await scheduler.schedule("a", at: t0, priority: 0)
        await scheduler.schedule("b", at: t0, priority: 3)
        await scheduler.schedule("a", at: t0.addingTimeInterval(5), priority: Engine.woken)
        #expect(await scheduler.takeDue(now: t0, limit: 1) == ["a"])
    }
}
