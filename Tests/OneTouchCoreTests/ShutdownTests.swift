import Foundation
import OneTouchCore
import OneTouchTesting
import Testing

@Suite("Shutdown mid-step is a crash to resume, never a failure")
struct ShutdownTests {
    /// The adapter call each provisioning step makes, where shutdown strikes.
    static let calls: [(step: Step, operation: String, onDirectory: Bool)] = [
        (.provision, "launch", false), (.preregister, "preregister", true),
        (.bootstrap, "createVolume", false), (.attachVolume, "attachVolume", false),
        (.complete, "isEnrolled", true),
    ]

    @Test(arguments: 0..<calls.count)
    func aStepCancelledMidCallSpendsNoAttemptAndResumesAfterRestart(index: Int) async throws {
        let call = Self.calls[index]
        let bed = try EngineTestBed()
        defer { bed.remove() }
        if call.onDirectory {
            bed.directoryService.faults.inject(.cancelledMidCall, into: call.operation)
        } else {
            bed.cloud.faults.inject(.cancelledMidCall, into: call.operation)
        }
        try await bed.create("web-01")
        try await bed.settle()
        let stopped = try bed.host("web-01")
        #expect(stopped.hostState.kind != .failed, "shutdown during \(call.step.rawValue) failed the host: \(stopped.hostState)")
        let events = try bed.store.events(hostID: stopped.id)
        #expect(!events.contains { $0.reason.contains("failed") || $0.reason.contains("retrying") })
        let attempts = try bed.store.attempts(hostID: stopped.id, step: call.step)
        #expect(attempts.allSatisfy { $0.errorMessage == nil }, "no attempt of \(call.step.rawValue) records an error")
        if call.step == .bootstrap || call.step == .attachVolume {  // later, the host has fetched and acknowledged it
            #expect(try bed.store.secret(hostID: stopped.id, kind: .oneTimePassword)?.wipedAt == nil, "the password is kept")
        }

        try await bed.restart()
        try await bed.settle()
        #expect(try bed.host("web-01").hostState == .ready)
        #expect(bed.cloud.instancesCreated == 1)
        #expect(bed.cloud.volumesCreated == 1)
        #expect(bed.directoryService.entriesCreated == 1)
    }
}
