import Foundation
import OneTouchCore
import OneTouchTesting
import Synchronization
import Testing

@Suite("Crash safety: stop the engine around every external call, restart on the same database")
struct CrashSafetyTests {
    @Test(arguments: Step.provisioning, CrashPoint.allCases)
    func hostReachesReadyWithEverySideEffectOnce(step: Step, point: CrashPoint) async throws {
        let dead = Mutex(false)
        let crashed = Mutex(false)
        let bed = try EngineTestBed(
            cloud: FakeCloud(pendingDescribes: 1),
            crashHook: { s, p in
                // After the crash this engine is dead: it can make no further progress.
                if dead.withLock({ $0 }) { throw SimulatedCrash() }
                if s == step && p == point {
                    dead.withLock { $0 = true }
                    crashed.withLock { $0 = true }
                    throw SimulatedCrash()
                }
            })
        defer { bed.remove() }
        try await bed.create("web-01")
        try await bed.settle()
        #expect(crashed.withLock { $0 }, "the crash point \(step.rawValue)/\(point.rawValue) was reached")
        if !(step == .complete && point == .resultCommitted) {
            #expect(try bed.host("web-01").hostState != .ready)
        }

        try await bed.restart()
        try await bed.settle()

        let host = try bed.host("web-01")
        #expect(host.hostState == .ready)
        #expect(bed.cloud.instancesCreated == 1, "one VM")
        #expect(bed.cloud.volumesCreated == 1, "one volume")
        #expect(bed.directoryService.entriesCreated == 1, "one principal")
        #expect(bed.directoryService.passwordsIssued == 1, "one one-time password")
        let keys = Set(bed.notifier.announcements.map(\.idempotencyKey))
        #expect(keys == ["\(host.id)-ready-g1"])
        // An announcement is at least once: only a crash between sending it and recording it repeats it.
        let repeatAllowed = step == .complete && point == .externalCallMade
        #expect(bed.notifier.announcements.count == (repeatAllowed ? 2 : 1))
    }

    @Test(arguments: Step.teardown, CrashPoint.allCases)
    func teardownFinishesAfterACrash(step: Step, point: CrashPoint) async throws {
        let dead = Mutex(false)
        let armed = Mutex(false)
        let bed = try EngineTestBed(crashHook: { s, p in
            guard armed.withLock({ $0 }) else { return }
            if dead.withLock({ $0 }) { throw SimulatedCrash() }
            if s == step && p == point {
                dead.withLock { $0 = true }
                throw SimulatedCrash()
            }
        })
        defer { bed.remove() }
        try await bed.create("web-01")
        try await bed.settle()
        armed.withLock { $0 = true }
        _ = try await bed.service.destroy("web-01", keepVolume: false, actor: "test")
        try await bed.settle()
        #expect(dead.withLock { $0 })
        try await bed.restart()
        try await bed.settle()
        #expect(try bed.host("web-01").hostState == .destroyed)
        #expect(bed.cloud.allVolumes.isEmpty)
        #expect(bed.cloud.allInstances.allSatisfy { $0.state == .terminated })
        #expect(bed.directoryService.entryCount == 0)
    }

    @Test func preregisterRepeatedAfterLostResponsesKeepsTheSamePasswordAndSucceeds() async throws {
        // Each repeat re-sets the password (MIT `cpw` bumps the key version): the entry is still ours.
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.directoryService.faults.inject(.lostResponse, into: "preregister", times: 3)
        try await bed.create("web-01")
        try await bed.settle()
        #expect(try bed.host("web-01").hostState == .ready)
        #expect(bed.directoryService.entriesCreated == 1)
        #expect(bed.directoryService.passwordsIssued == 1)
    }

    @Test func lostLaunchResponseDoesNotDuplicateTheVM() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.cloud.faults.inject(.lostResponse, into: "launch", times: 2)
        bed.cloud.faults.inject(.lostResponse, into: "createVolume", times: 2)
        bed.directoryService.faults.inject(.lostResponse, into: "preregister")
        try await bed.create("web-01")
        try await bed.settle()
        #expect(try bed.host("web-01").hostState == .ready)
        #expect(bed.cloud.instancesCreated == 1)
        #expect(bed.cloud.volumesCreated == 1)
        #expect(bed.directoryService.entriesCreated == 1)
    }
}
