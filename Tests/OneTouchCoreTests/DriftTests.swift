import Foundation
import OneTouchCore
import OneTouchTesting
import Testing

@Suite("Drift: states from configuration runs, silence, one announcement per transition, cloud drift")
struct DriftTests {
    static let recapOK = ConfigRunReport.Recap(ok: 2)
    static func run(
        changed: Int = 0, failed: Int = 0, unreachable: Int = 0, exit: Int = 0, check: Bool = false, recap: Bool = true,
        tasks: [String] = []
    ) -> ConfigRunReport {
        ConfigRunReport(
            commit: "4c95f3c8f8b4f5e3d658164a9fdacdadcbe37140", exitStatus: exit, checkMode: check,
            recap: recap ? .init(ok: 2, changed: changed, unreachable: unreachable, failed: failed) : nil, changedTasks: tasks)
    }

    // MARK: Pure decisions

    @Test func aRunsOutcomeComesFromItsRecapAndOnlyWithoutOneFromItsExitStatus() {
        #expect(Self.run().outcome == .inSync)
        #expect(Self.run(changed: 1).outcome == .corrected)
        #expect(Self.run(failed: 1, exit: 2).outcome == .failing)
        #expect(Self.run(unreachable: 1, exit: 4).outcome == .failing)
        // 4 without a recap is a playbook that does not parse; 2 without one a checkout that failed
        #expect(Self.run(exit: 4, recap: false).outcome == .failing)
        #expect(Self.run(exit: 2, recap: false).outcome == .failing)
        // the callback could not write, the run exited 0: in sync by its exit status
        #expect(Self.run(exit: 0, recap: false).outcome == .inSync)
    }

    @Test func aSequenceOfRunsIsAnnouncedOncePerTransitionNeverPerRun() {
        var record = Drift.Record(state: nil, runState: nil, problem: false, lastReportAt: Date(timeIntervalSince1970: 0))
        var announced: [DriftState] = []
        func report(_ run: ConfigRunReport) {
            let (next, announce) = Drift.reported(record, run: run, now: record.lastReportAt.addingTimeInterval(60))
            record = next
            if announce, let state = next.state { announced.append(state) }
        }
        report(Self.run(changed: 1))  // the first run sets the host up: corrected, nobody told
        report(Self.run())
        report(Self.run(changed: 1))  // drift found and fixed: kept, not announced
        report(Self.run(failed: 1, exit: 2))
        report(Self.run(failed: 1, exit: 2))
        report(Self.run(failed: 1, exit: 2))
        report(Self.run(changed: 1))  // it fixed itself, but is not in sync yet
        report(Self.run())
        report(Self.run())
        #expect(announced == [.failing, .inSync])
        // a check run does not change the state (it changed nothing), but it is a report
        report(Self.run(failed: 1, exit: 2))
        report(Self.run(changed: 3, check: true))
        #expect(record.state == .failing && announced == [.failing, .inSync, .failing])
    }

    @Test func silenceComesAfterTwoPeriodsPlusTheSplayAndEndsWithTheNextReport() {
        let last = Date(timeIntervalSince1970: 1_000_000)
        #expect(Drift.silentAfter(last, period: .seconds(600), splaySeconds: 37) == last.addingTimeInterval(1237))
        var record = Drift.Record(state: .inSync, runState: .inSync, problem: false, lastReportAt: last)
        let silent = Drift.moving(record, to: .silent)
        #expect(silent.announce && silent.record.problem)
        #expect(!Drift.moving(silent.record, to: .silent).announce)
        record = silent.record
        let back = Drift.reported(record, run: Self.run(), now: last.addingTimeInterval(2000))
        #expect(back.record.state == .inSync && back.announce && !back.record.problem)
    }

    @Test func aReportThatIsTooBigOrMalformedSaysWhatIsWrong() {
        var run = Self.run()
        #expect(run.problem() == nil)
        run.commit = "not-a-commit"
        #expect(run.problem()?.contains("hex digits") == true)
        run = Self.run(exit: 300)
        #expect(run.problem()?.contains("exit status") == true)
        run = Self.run(tasks: Array(repeating: "t", count: 201))
        #expect(run.problem()?.contains("at most 200") == true)
        run = Self.run()
        run.outputTail = String(repeating: "x", count: 16 * 1024 + 1)
        #expect(run.problem()?.contains("send at most the last 16384") == true)
    }

    @Test func cloudDifferencesNameTheFieldTheExpectedAndTheActualValue() {
        let declared = CloudDeclaration(
            instanceType: "t3.small", securityGroupIDs: ["sg-b", "sg-a"], subnetID: "subnet-1", tags: ["Name": "web-01.example.com"],
            rootVolumeEncrypted: true)
        var instance = Instance(
            id: "i-1", state: .running, tags: ["Name": "web-01.example.com"], instanceType: "t3.small", securityGroupIDs: ["sg-a", "sg-b"],
            subnetID: "subnet-1", rootVolumeID: "vol-root")
        let root = Volume(id: "vol-root", zone: nil, sizeGiB: 8, state: .inUse, encrypted: true, attachedTo: "i-1")
        let data = Volume(id: "vol-data", zone: nil, sizeGiB: 10, state: .inUse, encrypted: true, attachedTo: "i-1")
        let none = CloudDrift.differences(
            declared: declared, instance: instance, rootVolume: root, dataVolumeID: "vol-data", dataVolume: data)
        #expect(none.isEmpty)
        instance.instanceType = "t3.large"
        instance.securityGroupIDs = ["sg-a", "sg-open"]
        instance.tags["Name"] = nil
        instance.metadataTokensRequired = false
        var detached = data
        detached.attachedTo = nil
        let found = CloudDrift.differences(
            declared: declared, instance: instance, rootVolume: root, dataVolumeID: "vol-data", dataVolume: detached)
        #expect(
            found == [
                CloudDifference(field: "instance type", expected: "t3.small", actual: "t3.large"),
                CloudDifference(field: "security groups", expected: "sg-a,sg-b", actual: "sg-a,sg-open"),
                CloudDifference(field: "IMDSv2 required", expected: "true", actual: "false"),
                CloudDifference(field: "tag Name", expected: "web-01.example.com", actual: "(missing)"),
                CloudDifference(field: "data volume attached to", expected: "i-1", actual: "(nothing)"),
            ])
        #expect(
            CloudDrift.differences(declared: declared, instance: nil, rootVolume: nil, dataVolumeID: nil, dataVolume: nil) == [
                CloudDifference(field: "instance", expected: "running", actual: "not found")
            ])
    }

    // MARK: The service, with a store

    /// A ready host with a report credential, and the drift service.
    static func readyHost(_ bed: EngineTestBed, _ name: String = "web-01", options: DriftService.Options = .init()) async throws -> (
        DriftService, HostRecord, Secret
    ) {
        let drift = bed.drift(options)
        let created = try await bed.create(name)
        let credential = try await drift.issueCredential(hostID: created.id, token: try bed.tokenFor(created).reveal())
        try await bed.settle()
        let host = try bed.host(name)
        #expect(host.state == .ready)
        return (drift, host, credential)
    }

    static func driftEvents(_ bed: EngineTestBed, _ host: HostRecord) throws -> [String] {
        try bed.store.events(hostID: host.id).filter { $0.actor == Drift.actor }.map(\.reason)
    }

    @Test func reportsMoveTheHostsStateAndEachTransitionIsOneEventAndOneAnnouncement() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        let (drift, host, credential) = try await Self.readyHost(bed)
        let before = bed.notifier.announcements.count
        for run in [Self.run(changed: 1), Self.run(), Self.run(failed: 1, exit: 2), Self.run(failed: 1, exit: 2), Self.run()] {
            bed.clock.advance(by: .seconds(600))
            _ = try await drift.report(hostID: host.id, credential: credential.reveal(), run)
        }
        let events = try Self.driftEvents(bed, host)
        #expect(events.count == 2)
        #expect(events.first?.contains("web-01 is failing its configuration runs (ansible-pull exited 2)") == true)
        #expect(events.last == "configuration drift: web-01 is in sync again")
        let announced = bed.notifier.announcements.dropFirst(before)
        #expect(announced.map(\.kind) == [.drift, .drift])
        let view = try #require(try drift.list().first)
        #expect(view.drift == .inSync && view.lastRun?.commit == "4c95f3c8f8b4f5e3d658164a9fdacdadcbe37140")
        #expect(try bed.service.status(named: "web-01").drift == .inSync)
    }

    @Test func theFirstRunOfAHostBeingSetUpIsKeptButNotAnnouncedItsStepSaysHowItWent() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        let drift = bed.drift()
        let created = try await bed.create("web-01")
        let credential = try await drift.issueCredential(hostID: created.id, token: try bed.tokenFor(created).reveal())
        let answer = try await drift.report(hostID: created.id, credential: credential.reveal(), Self.run(failed: 1, exit: 2))
        #expect(answer.drift == .failing)
        try await bed.settle()
        _ = try await drift.report(hostID: created.id, credential: credential.reveal(), Self.run())
        #expect(try Self.driftEvents(bed, created).isEmpty, "neither the failure during set-up nor 'in sync again' after it")
        #expect(bed.notifier.announcements.allSatisfy { $0.kind != .drift })
    }

    @Test func aHostThatStopsReportingFallsSilentOnceAndIsBackWithItsNextReport() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        var options = DriftService.Options()
        options.pullPeriod = .seconds(600)
        let (drift, host, credential) = try await Self.readyHost(bed, options: options)
        _ = try await drift.report(hostID: host.id, credential: credential.reveal(), Self.run())
        let splay = UserDataRenderer.splay(hostID: host.id, period: 600)
        bed.clock.advance(by: .seconds(Int64(1200 + splay - 1)))
        #expect(try await drift.sweepSilence().isEmpty)
        bed.clock.advance(by: .seconds(2))
        #expect(try await drift.sweepSilence() == ["web-01"])
        bed.clock.advance(by: .seconds(3600))
        #expect(try await drift.sweepSilence().isEmpty)  // still silent: said once
        #expect(try drift.list().first?.drift == .silent)
        _ = try await drift.report(hostID: host.id, credential: credential.reveal(), Self.run())
        let events = try Self.driftEvents(bed, host)
        #expect(events.count == 2 && events[0].contains("is silent") && events[1].contains("in sync again"))
    }

    @Test func aBadReportIsRefusedWithoutTouchingTheHostsRecordAndABurstIsLimited() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        var options = DriftService.Options()
        options.reportBurst = 3
        let (drift, host, credential) = try await Self.readyHost(bed, options: options)
        let stateBefore = try drift.list()
        var bad = Self.run()
        bad.commit = "zz"
        await #expect(throws: ServiceError.self) { try await drift.report(hostID: host.id, credential: credential.reveal(), bad) }
        #expect(try drift.list() == stateBefore)
        for _ in 0..<3 { _ = try await drift.report(hostID: host.id, credential: credential.reveal(), Self.run()) }
        do {
            _ = try await drift.report(hostID: host.id, credential: credential.reveal(), Self.run())
            Issue.record("a fourth report in a burst of three was accepted")
        } catch let error as ServiceError {
            #expect(error.kind == .tooManyRequests)
        }
        bed.clock.advance(by: .seconds(61))
        _ = try await drift.report(hostID: host.id, credential: credential.reveal(), Self.run())
    }

    @Test func aCheckRequestReachesTheHostWithEveryAnswerUntilItsCheckRunArrives() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        let (drift, host, credential) = try await Self.readyHost(bed)
        #expect(try await drift.requestCheck(names: [], role: "web", all: false) == ["web-01"])
        #expect(try await drift.report(hostID: host.id, credential: credential.reveal(), Self.run()).nextRun == "check")
        #expect(try await drift.report(hostID: host.id, credential: credential.reveal(), Self.run()).nextRun == "check")
        let answer = try await drift.report(
            hostID: host.id, credential: credential.reveal(), Self.run(changed: 1, check: true, tasks: ["Write managed file"]))
        #expect(answer.nextRun == "apply" && answer.drift == .inSync)
        let view = try #require(try drift.list().first)
        #expect(view.lastCheck?.changedTasks == ["Write managed file"] && view.lastCheck?.checkMode == true && !view.checkRequested)
        await #expect(throws: ServiceError.self) { try await drift.requestCheck(names: [], role: "db", all: false) }
    }

    @Test func aRotatedCredentialReplacesTheOldOneOnlyOnceTheHostUsesIt() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        let (drift, host, old) = try await Self.readyHost(bed)
        #expect(try await drift.report(hostID: host.id, credential: old.reveal(), Self.run()).credential == nil)
        try await drift.rotateCredential(name: "web-01")
        let lost = try #require(try await drift.report(hostID: host.id, credential: old.reveal(), Self.run()).credential)
        // the answer was lost: the old credential still works, and a fresh one is offered again
        let fresh = try #require(try await drift.report(hostID: host.id, credential: old.reveal(), Self.run()).credential)
        #expect(fresh != lost)
        await #expect(throws: ServiceError.self) { try await drift.report(hostID: host.id, credential: lost, Self.run()) }
        #expect(try await drift.report(hostID: host.id, credential: fresh, Self.run()).credential == nil)
        await #expect(throws: ServiceError.self) { try await drift.report(hostID: host.id, credential: old.reveal(), Self.run()) }
        let row = try #require(try bed.store.reportCredential(hostID: host.id))
        #expect(row.hash == SecretBox.tokenHash(Secret(fresh)) && row.nextHash == nil)
    }

    @Test func theReportCredentialStopsAtDestroyAndIsNeverStoredInPlaintext() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        let (drift, host, credential) = try await Self.readyHost(bed)
        _ = try await drift.report(hostID: host.id, credential: credential.reveal(), Self.run())
        let database = try Data(contentsOf: URL(fileURLWithPath: bed.databasePath))
        #expect(database.range(of: Data(credential.reveal().utf8)) == nil)
        _ = try await bed.service.destroy("web-01", keepVolume: false, actor: "test")
        #expect(try bed.store.reportCredential(hostID: host.id) == nil)
        await #expect(throws: ServiceError.self) { try await drift.report(hostID: host.id, credential: credential.reveal(), Self.run()) }
    }

    @Test func cloudDriftIsRecordedAndAnnouncedWhenItAppearsAndWhenItClearsNotAtEveryLook() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        let (drift, host, _) = try await Self.readyHost(bed)
        let instanceID = try #require(host.decodedFacts.instanceID)
        #expect(try await drift.checkCloud().first?.differences == [])
        bed.cloud.change(instance: instanceID) {
            $0.instanceType = "huge.metal"
            $0.tags["onetouch:role"] = "db"
        }
        let found = try #require(try await drift.checkCloud().first).differences
        #expect(found.map(\.field) == ["instance type", "tag onetouch:role"])
        #expect(found.first?.actual == "huge.metal")
        _ = try await drift.checkCloud()
        #expect(try Self.driftEvents(bed, host).count == 2)
        #expect(try drift.list().first?.cloud.count == 2)
        bed.cloud.change(instance: instanceID) {
            $0.instanceType = "t3.small"
            $0.tags["onetouch:role"] = "web"
        }
        #expect(try await drift.checkCloud().first?.differences == [])
        let events = try Self.driftEvents(bed, host)
        #expect(events.count == 4 && events[2].hasPrefix("cloud drift cleared: web-01: instance type"))
        #expect(bed.notifier.announcements.filter { $0.kind == .drift }.count == 4)
    }
}
