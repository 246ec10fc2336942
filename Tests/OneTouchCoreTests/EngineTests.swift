import Foundation
import OneTouchCore
import OneTouchTesting
import Testing

@Suite("Engine with fake adapters and a manual clock")
struct EngineTests {
    @Test func happyPathReachesReadyAndAnnouncesOnce() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        try await bed.create("web-01")
        try await bed.settle()
        let host = try bed.host("web-01")
        #expect(host.hostState == .ready, "\(host.reason ?? "")")
        #expect(bed.cloud.instancesCreated == 1)
        #expect(bed.cloud.volumesCreated == 1)
        #expect(bed.directoryService.entriesCreated == 1)
        #expect(bed.notifier.announcements.map(\.kind) == [.ready])
        let events = try bed.store.events(hostID: host.id).map(\.toState)
        #expect(events.first == "pending")
        #expect(events.last == "ready")
        #expect(events.contains("waiting(bootstrap)"))
        // The one-time password is wiped at complete.
        let otp = try bed.store.secret(hostID: host.id, kind: .oneTimePassword)
        #expect(otp?.sealed == nil && otp?.wipedAt != nil)
    }

    @Test func transientFailureIsRetriedWithBackoffAndThenSucceeds() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.cloud.faults.inject(.transient, into: "launch", times: 2)
        try await bed.create("web-01")
        try await bed.settle()
        let host = try bed.host("web-01")
        #expect(host.hostState == .ready)
        let attempts = try bed.store.attempts(hostID: host.id, step: .provision)
        #expect(attempts.map(\.attempt) == [1, 2, 3])
        #expect(attempts.prefix(2).allSatisfy { $0.outcome == .retrying && $0.errorClass == .transient })
        #expect(Set(attempts.map(\.idempotencyKey)).count == 1, "every retry reuses the idempotency key")
        #expect(bed.cloud.instancesCreated == 1)
    }

    @Test func transientFailuresBeyondTheBudgetFailTheHost() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.cloud.faults.inject(.transient, into: "createVolume", times: 50)
        try await bed.create("web-01")
        try await bed.settle()
        let reason = try bed.failedReason("web-01", at: .attachVolume)
        #expect(reason.contains("gave up after 5 attempts"))
        #expect(reason.contains("onetouch resume web-01"))
    }

    @Test func permanentFailureFailsWithZeroRetries() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.cloud.faults.inject(.permanent("InvalidAMIID.NotFound: The image id '[ami-0bad]' does not exist"), into: "launch")
        try await bed.create("web-01")
        try await bed.settle()
        let host = try bed.host("web-01")
        #expect(host.hostState.kind == .failed)
        #expect(host.step == .provision)
        #expect(host.reason?.contains("InvalidAMIID.NotFound") == true)
        #expect(try bed.store.attempts(hostID: host.id, step: .provision).count == 1)
        #expect(bed.cloud.calls("launch") == 1)
    }

    @Test func needsHumanPausesTheHost() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.cloud.faults.inject(.needsHuman("AWS credentials expired"), into: "launch")
        try await bed.create("web-01")
        try await bed.settle()
        #expect(try bed.host("web-01").hostState.kind == .paused)
        _ = try await bed.service.resume("web-01", actor: "test")
        try await bed.settle()
        #expect(try bed.host("web-01").hostState == .ready)
    }

    @Test func silentHostFailsAtTheBootstrapDeadline() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.silentHosts = ["web-01"]
        let created = try await bed.create("web-01")
        try await bed.settle()
        let reason = try bed.failedReason("web-01", at: .bootstrap)
        #expect(reason.contains("did not report booted within 15m0s"))
        let attempt = try #require(try bed.store.attempts(hostID: created.id, step: .bootstrap).first)
        #expect(attempt.deadline == attempt.startedAt.addingTimeInterval(900))
    }

    @Test func deadlineSurvivesARestart() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.silentHosts = ["web-01"]
        try await bed.create("web-01")
        for _ in 0..<20 { await bed.engine.runUntilIdle() }
        let waiting = try bed.host("web-01")
        #expect(waiting.hostState == .waiting(.bootstrap))
        let deadline = try #require(try bed.store.attempts(hostID: waiting.id, step: .bootstrap, generation: 1).last?.deadline)
        bed.clock.advance(by: .seconds(600))
        try await bed.restart()
        await bed.engine.runUntilIdle()
        let attempts = try bed.store.attempts(hostID: waiting.id, step: .bootstrap, generation: 1)
        #expect(attempts.count == 1 && attempts[0].finishedAt == nil, "the restarted engine continues the open attempt")
        #expect(attempts.first?.deadline == deadline)
        #expect(await bed.engine.nextDue() == deadline, "the restarted engine waits for the original deadline")
    }

    @Test func failedConfigPullNamesTheStatusAndTheRetryCommand() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.configExitStatus = ["web-01": 2]
        try await bed.create("web-01")
        try await bed.settle()
        let host = try bed.host("web-01")
        #expect(host.hostState.kind == .failed)
        #expect(host.reason?.contains("exited with status 2") == true)
        #expect(host.reason?.contains("onetouch retry web-01 --from config-pull") == true)
        // The team fixes the playbook; the next pull succeeds.
        bed.configExitStatus = [:]
        _ = try await bed.service.retry("web-01", from: .configPull, actor: "test")
        try await bed.settle()
        #expect(try bed.host("web-01").hostState == .ready)
        #expect(bed.cloud.instancesCreated == 1)
    }

    @Test func retryFromProvisionStartsANewGenerationAndRetiresTheOldInstance() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        try await bed.create("web-01")
        try await bed.settle()
        let before = try bed.host("web-01")
        _ = try await bed.service.retry("web-01", from: .provision, actor: "test")
        try await bed.settle()
        let after = try bed.host("web-01")
        #expect(after.hostState == .ready)
        #expect(after.generation == before.generation + 1)
        #expect(after.tokenHash == nil && before.tokenHash == nil, "each generation's token closed at its ready")
        #expect(bed.cloud.instancesCreated == 2)
        #expect(bed.cloud.allInstances.filter { $0.state != .terminated }.count == 1)
    }

    @Test func launchKeyWhoseInstanceWasTerminatedStartsTheNextGenerationByItself() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        // The launch happens but its answer is lost; before the retry, someone terminates the VM.
        bed.cloud.faults.inject(.lostResponse, into: "launch")
        try await bed.create("web-01")
        await bed.engine.runUntilIdle()
        let first = try #require(bed.cloud.allInstances.first)
        try await bed.cloud.terminate(instanceID: first.id)
        let before = try bed.host("web-01")
        try await bed.settle()

        let host = try bed.host("web-01")
        #expect(host.hostState == .ready, "\(host.reason ?? "")")
        #expect(host.generation == 2)
        #expect(host.tokenHash != before.tokenHash, "the new generation gets a new host token")
        #expect(bed.cloud.instancesCreated == 2)
        let live = bed.cloud.allInstances.filter { $0.state != .terminated }
        #expect(live.map(\.tags["onetouch:generation"]) == ["2"])
        #expect(bed.cloud.allVolumes.count == 1)
        let provision = try bed.store.attempts(hostID: host.id, step: .provision)
        #expect(provision.map(\.generation) == [1, 1, 2])
        #expect(provision[1].outcome == .abandoned)
        let events = try bed.store.events(hostID: host.id).map(\.reason)
        #expect(events.contains { $0.contains("launching generation 2") })
    }

    @Test func aNameSomeOtherMachineEnrolledWithFailsAtPreregisterWithoutTouchingItsEntry() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        let other = DirectoryHost(fqdn: "web-01.onetouch.test")
        let password = Secret("their-password")
        _ = try await bed.directoryService.preregister(other, proposedPassword: password)
        #expect(bed.directoryService.enroll(fqdn: other.fqdn, password: password))
        try await bed.create("web-01")
        try await bed.settle()
        let reason = try bed.failedReason("web-01", at: .preregister)
        let host = try bed.host("web-01")
        #expect(reason.contains("already has web-01.onetouch.test enrolled by another machine"))
        #expect(bed.directoryService.passwordsIssued == 1, "their entry keeps its key")
        #expect(try bed.store.attempts(hostID: host.id, step: .preregister).count == 1, "zero retries")
    }

    @Test func aVolumeTheCloudRollsBackFailsNamingTheKeyAndRetryingTheStepMakesANewOne() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.cloud.setEncryptionKeyUsable(false)
        try await bed.create("web-01")
        try await bed.settle()
        let reason = try bed.failedReason("web-01", at: .attachVolume)
        var host = try bed.host("web-01")
        #expect(reason.contains("fake-key") && reason.contains("gone"))
        #expect(reason.contains("onetouch retry web-01 --from attach-volume"))
        #expect(bed.cloud.calls("createVolume") == 1, "the volume is requested once, then looked for")

        bed.cloud.setEncryptionKeyUsable(true)
        _ = try await bed.service.retry("web-01", from: .attachVolume, actor: "test")
        try await bed.settle()
        host = try bed.host("web-01")
        #expect(host.hostState == .ready, "\(host.reason ?? "")")
        #expect(host.generation == 1, "the instance was fine: same generation")
        #expect(bed.cloud.instancesCreated == 1)
        #expect(bed.cloud.allVolumes.count == 1)
    }

    @Test func destroyRemovesEverythingAndDestroyingTwiceIsRefused() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        try await bed.create("web-01")
        try await bed.settle()
        _ = try await bed.service.destroy("web-01", keepVolume: false, actor: "test")
        try await bed.settle()
        let host = try bed.host("web-01")
        #expect(host.hostState == .destroyed)
        #expect(host.tokenHash == nil, "the host token is revoked")
        #expect(bed.cloud.allInstances.allSatisfy { $0.state == .terminated })
        #expect(bed.cloud.allVolumes.isEmpty)
        #expect(bed.directoryService.entryCount == 0)
        await #expect(throws: ServiceError.self) { try await bed.service.destroy("web-01", keepVolume: false, actor: "test") }
        // The name is free again.
        try await bed.create("web-01")
    }

    @Test func aCommandThatLosesTheRaceWithTheEngineDecidesAgainOnWhatTheEngineWrote() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        try await bed.create("web-01")
        var seen: [Int] = []
        let host = try await bed.service.onLatest("web-01") { host in
            seen.append(host.version)
            if seen.count == 1 {
                // The engine writes the row between the command's read and its write.
                _ = try await bed.store.update(host, Store.HostUpdate(), now: bed.clock.now)
                return try await bed.store.update(host, Store.HostUpdate(), now: bed.clock.now)
            }
            return host
        }
        #expect(seen.count == 2)
        #expect(seen.last == seen[0] + 1, "the second try reads the row the engine wrote")
        #expect(host.version == seen[0] + 1)
    }

    @Test func aCommandOnAHostThatKeepsChangingIsAConflictThatSaysWhatToDo() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        try await bed.create("web-01")
        var tries = 0
        do {
            _ = try await bed.service.onLatest("web-01", tries: 3) { host in
                tries += 1
                _ = try await bed.store.update(host, Store.HostUpdate(), now: bed.clock.now)
                return try await bed.store.update(host, Store.HostUpdate(), now: bed.clock.now)
            }
            Issue.record("a host that changes under every try is a conflict")
        } catch let error as ServiceError {
            #expect(error.kind == .conflict)
            #expect(error.message.contains("onetouch status web-01"), "\(error.message)")
        }
        #expect(tries == 3)
    }

    @Test func destroyWhileTheLaunchIsInFlightTerminatesTheInstanceTheCloudDoesNotListYet() async throws {
        // EC2 lists a new instance late; the launch answers after the destroy was asked for.
        let bed = try EngineTestBed(cloud: FakeCloud(launchDelay: .milliseconds(400)))
        defer { bed.remove() }
        bed.cloud.setNewResourcesHidden(true)
        try await bed.create("web-01")
        let round = Task { _ = await bed.engine.runOnce() }
        let started = ContinuousClock.now
        while bed.cloud.calls("launch") == 0 && ContinuousClock.now - started < .seconds(10) {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(bed.cloud.calls("launch") == 1, "the launch is under way")
        _ = try await bed.service.destroy("web-01", keepVolume: false, actor: "test")
        await round.value
        #expect(bed.cloud.instancesCreated == 1)
        for _ in 0..<5 {
            await bed.engine.runUntilIdle()
            bed.clock.advance(by: .seconds(2))
        }
        // Teardown must not call the host destroyed while the instance it launched is not listed yet.
        #expect(try bed.host("web-01").hostState.kind == .destroying)
        bed.cloud.revealAll()
        try await bed.settle()
        #expect(try bed.host("web-01").hostState == .destroyed)
        #expect(bed.cloud.allInstances.count == 1)
        #expect(bed.cloud.allInstances.allSatisfy { $0.state == .terminated }, "\(bed.cloud.allInstances)")
    }

    @Test func destroyLeavesADirectoryEntryAnotherMachineEnrolledWithAlone() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        let fqdn = try await bed.create("db01").decodedSpec.fqdn
        bed.directoryService.plantEnrolledEntry(fqdn: fqdn)
        try await bed.settle()
        _ = try bed.failedReason("db01", at: .preregister)
        _ = try await bed.service.destroy("db01", keepVolume: false, actor: "test")
        try await bed.settle()
        #expect(try bed.host("db01").hostState == .destroyed)
        #expect(bed.directoryService.hasEntry(fqdn), "the other machine's entry is still there")
        #expect(bed.directoryService.calls("remove") == 0)
    }

    @Test func factsThatCannotBeReadFailTheHostInsteadOfForgettingItsVM() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        let host = try await bed.create("web-01")
        for _ in 0..<10 { await bed.engine.runUntilIdle() }
        #expect(try bed.host("web-01").hostState == .waiting(.bootstrap))
        // A damaged row: the instance id is a number.
        try await bed.store.pool.write { db in
            try db.execute(sql: #"UPDATE hosts SET facts = '{"instanceID": 5}', version = version + 1 WHERE id = ?"#, arguments: [host.id])
        }
        try await bed.restart()
        try await bed.settle()
        let reason = try bed.failedReason("web-01", at: .bootstrap)
        #expect(reason.contains("(its facts in the database) cannot be read"))
        #expect(reason.contains("onetouch retry web-01 --from provision"))
        #expect(bed.cloud.instancesCreated == 1, "no second VM")
        await #expect(throws: ServiceError.self) { try await bed.service.resume("web-01", actor: "test") }
        // Destroy still works: teardown finds the VM through the ledger and its tags.
        _ = try await bed.service.destroy("web-01", keepVolume: false, actor: "test")
        try await bed.settle()
        #expect(try bed.host("web-01").hostState == .destroyed)
        #expect(bed.cloud.allInstances.allSatisfy { $0.state == .terminated })
    }

    @Test func destroyKeepVolumeKeepsTheVolume() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        try await bed.create("web-01")
        try await bed.settle()
        _ = try await bed.service.destroy("web-01", keepVolume: true, actor: "test")
        try await bed.settle()
        #expect(try bed.host("web-01").hostState == .destroyed)
        #expect(bed.cloud.allVolumes.count == 1)
    }

    @Test func duplicateLiveNameIsRefusedBeforeAnySideEffect() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        try await bed.create("web-01")
        do {
            try await bed.create("web-01")
            Issue.record("a second live web-01 was accepted")
        } catch let error as ServiceError {
            #expect(error == ServiceError(.conflict, HostNameTaken(name: "web-01").description))
        }
        #expect(try bed.store.hosts().count == 1)
    }

    @Test func namesLongerThanFreeIPAAndLinuxAllowAreRefusedAtCreate() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        _ = try await bed.create("web-01")
        do {
            try await bed.create(String(repeating: "a", count: 63))  // a valid label, too long with the domain
            Issue.record("an FQDN over 64 characters was accepted")
        } catch let error as ServiceError {
            #expect(error.description.contains("at most 64"), "\(error)")
        }
        #expect(try bed.store.hosts().count == 1)
    }

    @Test func manyHostsRunConcurrentlyAndAllBecomeReady() async throws {
        let bed = try EngineTestBed(cloud: FakeCloud(pendingDescribes: 2))
        defer { bed.remove() }
        for i in 1...40 { try await bed.create("web-\(i)") }
        try await bed.settle()
        #expect(try bed.store.hosts(state: .ready).count == 40)
        #expect(bed.cloud.instancesCreated == 40)
        #expect(bed.cloud.volumesCreated == 40)
    }

    @Test func hostsDueWhileEverySlotIsTakenWaitForASlotWithoutSpinning() async throws {
        var options = EngineTestBed.defaultOptions
        options.concurrency = 1
        let bed = try EngineTestBed(cloud: FakeCloud(launchDelay: .milliseconds(400)), options: options)
        defer { bed.remove() }
        for name in ["web-01", "web-02", "web-03"] { try await bed.create(name) }
        let engine = bed.engine
        let start = ContinuousClock.now
        let running = Task { try await engine.run() }
        while bed.cloud.calls("launch") < 2 && ContinuousClock.now - start < .seconds(20) {
            try await Task.sleep(for: .milliseconds(50))
        }
        running.cancel()
        _ = await running.result
        let seconds = (ContinuousClock.now - start) / .seconds(1)
        #expect(bed.cloud.calls("launch") >= 2, "the hosts took turns")
        // Spinning on the past due time of the waiting hosts asked the clock tens of thousands of
        // times a second; waiting for a free slot asks a few times per launch.
        #expect(Double(bed.clock.sleeps) / seconds < 100, "\(bed.clock.sleeps) looks at the schedule in \(seconds) s")
    }

    @Test func aHostThatReportedGoesBeforeABurstOfNewHosts() async throws {
        var options = EngineTestBed.defaultOptions
        options.concurrency = 1
        let bed = try EngineTestBed(options: options)
        defer { bed.remove() }
        try await bed.create("first")
        // The first host runs until it waits for its `booted` report.
        while try bed.host("first").hostState != .waiting(.bootstrap) { await bed.engine.runUntilIdle() }
        for i in 1...20 { try await bed.create("new-\(i)") }
        bed.clock.advance(by: .seconds(1))  // the report comes after the creates: earliest-first would pick them
        let first = try bed.host("first")
        #expect(try await bed.service.report(hostID: first.id, token: bed.tokenFor(first).reveal(), .init(stage: .booted)).recorded)
        #expect(await bed.engine.runOnce() == 1)
        #expect(try bed.host("first").hostState != .waiting(.bootstrap), "the booted host took the free slot")
        #expect(try (1...20).allSatisfy { try bed.host("new-\($0)").hostState == .pending }, "the 20 new hosts wait")
    }

    @Test func aHostRetriedByACommandGoesBeforeABurstOfNewHosts() async throws {
        var options = EngineTestBed.defaultOptions
        options.concurrency = 1
        let bed = try EngineTestBed(options: options)
        defer { bed.remove() }
        bed.configExitStatus = ["first": 2]
        try await bed.create("first")
        try await bed.settle()
        #expect(try bed.host("first").hostState.kind == .failed)
        bed.configExitStatus = [:]
        for i in 1...20 { try await bed.create("new-\(i)") }
        bed.clock.advance(by: .seconds(1))  // the command comes after the creates: earliest-first would pick them
        // A failed host is in no schedule: only the command's wake-up says it is under way.
        _ = try await bed.service.retry("first", from: .configPull, actor: "test")
        #expect(await bed.engine.runOnce() == 1)
        #expect(try bed.host("first").hostState != .running(.configPull), "the retried host took the free slot")
        #expect(try (1...20).allSatisfy { try bed.host("new-\($0)").hostState == .pending }, "the 20 new hosts wait")
    }

    @Test func anEngineThatLosesItsLeaseStartsNoStepUntilItHoldsItAgain() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        let engine = bed.engine
        let probe = ReadinessProbe(store: bed.store, engine: engine, clock: bed.clock)
        let running = Task { try await engine.run() }
        defer { running.cancel() }
        try await waitUntil { engine.health.lastTick != nil }
        #expect(await probe.check().ready)

        // This engine stalls past its lease (30 s) and another process takes it.
        bed.clock.advance(by: .seconds(31))
        try await bed.store.acquireLease("engine", owner: "other-host pid 1", ttl: .seconds(300), now: bed.clock.now)
        try await waitUntil { engine.health.paused != nil }
        #expect(engine.health.paused?.contains("other-host pid 1") == true)
        let paused = await probe.check()
        #expect(!paused.ready)
        #expect(paused.checks.first { $0.name == "lease" }?.detail.contains("held by another process (other-host pid 1)") == true)
        #expect(paused.checks.first { $0.name == "engine" }?.detail.hasPrefix("paused: cannot renew its lease") == true)

        try await bed.create("web-01")
        try await Task.sleep(for: .milliseconds(300))
        #expect(bed.cloud.calls("launch") == 0, "no step runs while another process holds the lease")

        try await bed.store.releaseLease("engine", owner: "other-host pid 1")
        bed.clock.advance(by: .seconds(1))
        try await waitUntil { bed.cloud.calls("launch") == 1 }
        #expect(engine.health.paused == nil)
        #expect(await probe.check().ready)
    }

    @Test func aBackupTakenWhileServeWritesRestoresAndEveryHostInItResumes() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        for i in 1...10 { try await bed.create("web-\(i)") }
        _ = await bed.engine.runOnce()  // hosts mid-way: launched, some pre-registered
        let copy = bed.directory + "/backup.sqlite"
        // More hosts are created while the copy is taken: it holds one consistent snapshot.
        let writer = Task { for i in 11...30 { try await bed.create("web-\(i)") } }
        let summary = try DatabaseBackup.copy(database: bed.databasePath, to: copy)
        try await writer.value
        #expect((10...30).contains(summary.hosts))
        #expect(summary.migrations.last == Migrations.all.last?.id)
        #expect(try FileManager.default.attributesOfItem(atPath: copy)[.posixPermissions] as? Int == 0o600)
        #expect(throws: DatabaseBackup.Failure.self) { try DatabaseBackup.copy(database: bed.databasePath, to: copy) }

        // The database is lost; the copy is restored in its place and serve starts again.
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: bed.databasePath + suffix) }
        try FileManager.default.copyItem(atPath: copy, toPath: bed.databasePath)
        try await bed.restart()
        try await bed.settle()
        let hosts = try bed.store.hosts(state: .ready)
        #expect(hosts.count == summary.hosts, "every host in the copy reaches ready")
        for host in hosts {
            #expect(try await bed.cloud.instances(hostIDs: [host.id]).count == 1, "\(host.name): one instance, none twice")
        }
    }

    /// Polls `condition` in real time for up to 10 s.
    func waitUntil(_ condition: () -> Bool) async throws {
        let start = ContinuousClock.now
        while !condition() {
            guard ContinuousClock.now - start < .seconds(10) else {
                Issue.record("condition not met in 10 s")
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    @Test func secondEngineOnTheSameDatabaseIsRefusedByTheLease() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        try await bed.store.acquireLease("engine", owner: "other-host pid 1", ttl: .seconds(30), now: bed.clock.now)
        await #expect(throws: LeaseHeld.self) { try await bed.engine.run() }
    }
}

@Suite("Reconcile")
struct ReconcileTests {
    @Test func findsAndRemovesOrphansButNotWhatLiveOrKeptHostsOwn() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        try await bed.create("web-01")
        try await bed.create("web-02")
        try await bed.settle()
        _ = try await bed.service.destroy("web-02", keepVolume: true, actor: "test")
        try await bed.settle()
        let reconciler = Reconciler(store: bed.store, cloud: bed.cloud)
        #expect(try await reconciler.run(fix: false) == ReconcileReport(orphans: [], vanished: [], removed: []))

        let planted = bed.cloud.plantOrphan(hostID: "h-unknown")
        let report = try await reconciler.run(fix: false)
        #expect(Set(report.orphans.map(\.id)) == [planted.instance, planted.volume])
        #expect(report.orphans.allSatisfy { $0.why == "no host has this id" })

        // The database never saw h-unknown (restored from an older backup?): --fix keeps what it made.
        let careful = try await reconciler.run(fix: true)
        #expect(careful.removed.isEmpty)
        #expect(Set(careful.keptUnknown) == [planted.instance, planted.volume])
        let fixed = try await reconciler.run(fix: true, includeUnknownHosts: true)
        #expect(Set(fixed.removed) == [planted.instance, planted.volume])
        #expect(try await reconciler.run(fix: false).orphans.isEmpty)
        #expect(try bed.host("web-01").hostState == .ready, "the live host is untouched")
        #expect(bed.cloud.allVolumes.count == 2, "web-01's volume and web-02's kept volume remain")
    }

    @Test func anotherInstallationsResourcesAreNeverOrphansAndAKnownHostsLeftoversAreRemoved() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        let web = try await bed.create("web-01")
        try await bed.settle()
        #expect(bed.cloud.allInstances.allSatisfy { $0.tags[ManagedTags.installation] == bed.store.installationID })
        #expect(bed.store.installationID.hasPrefix("ot-"))
        // Another onetouch (another database) in the same account, with a host id this one lacks.
        let theirs = bed.cloud.plantOrphan(hostID: "h-theirs", installation: "ot-someone-else")
        // A second instance tagged as web-01's, which web-01 does not use: ours to remove.
        let leftover = bed.cloud.plantOrphan(hostID: web.id, installation: bed.store.installationID)
        let reconciler = Reconciler(store: bed.store, cloud: bed.cloud)
        let report = try await reconciler.run(fix: true)
        #expect(report.otherInstallations == 2)
        #expect(!report.orphans.map(\.id).contains(theirs.instance))
        #expect(Set(report.removed) == [leftover.instance, leftover.volume])
        #expect(report.keptUnknown.isEmpty)
        #expect(bed.cloud.allInstances.first { $0.id == theirs.instance }?.state == .running)
    }
}

@Suite("Pauses that clear by themselves")
struct SelfClearingPauseTests {
    @Test func expiredCredentialsPauseTheHostWhichContinuesByItselfOnceTheyWork() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.cloud.faults.inject(.needsHumanRecheck("AuthFailure: credentials expired", after: .seconds(60)), into: "launch", times: 3)
        try await bed.create("web-01")
        for _ in 0..<10 { await bed.engine.runUntilIdle() }
        let paused = try bed.host("web-01")
        #expect(paused.hostState.kind == .paused)
        #expect(paused.reason?.contains("AuthFailure: credentials expired") == true)
        try await bed.settle()
        let host = try bed.host("web-01")
        #expect(host.hostState == .ready)
        #expect(bed.cloud.calls("launch") == 4, "three refused, then one that worked")
        #expect(bed.cloud.instancesCreated == 1)
        let events = try bed.store.events(hostID: host.id)
        #expect(events.filter { $0.toState.hasPrefix("paused") }.count == 1, "re-checks that stay paused write no event")
        #expect(events.filter { $0.fromState?.hasPrefix("paused") == true }.count == 1)
    }

    @Test func anOrdinaryPauseWaitsForAPerson() async throws {
        let bed = try EngineTestBed()
        defer { bed.remove() }
        bed.cloud.faults.inject(.needsHuman("quota exceeded"), into: "launch")
        try await bed.create("web-01")
        try await bed.settle()
        #expect(try bed.host("web-01").hostState.kind == .paused)
        #expect(bed.cloud.calls("launch") == 1)
    }
}
