import Foundation
import OneTouchCore
import OneTouchTesting
import Testing

@testable import OneTouchSlack

/// The announcer against Slack in memory and a real engine on a real database.
@Suite(.serialized)
struct AnnouncerTests {
    @Test func aThreadOpensAtCreateFollowsTheStepsAndEndsWithReady() async throws {
        let harness = try SlackHarness()
        let task = harness.start(try harness.announcer())
        defer { task.cancel() }
        let host = try await harness.bed.create("web-01")
        try await eventually("the thread's parent") { harness.slack.parents().count == 1 }
        let opened = harness.slack.parents()[0]
        #expect(opened.text.contains("web-01.onetouch.test (role web)"))
        #expect(opened.key == "\(host.id)-parent")

        try await harness.bed.settle()
        #expect(try harness.bed.host("web-01").hostState == .ready)
        try await eventually("the ready reply and the parent's final state") {
            let parent = harness.slack.parents().first
            return parent.map { harness.slack.replies(to: $0).count == 1 && $0.text.contains("ready after") } ?? false
        }
        let parent = harness.slack.parents()[0]
        #expect(parent.updates >= 1, "the parent is edited, not posted again")
        #expect(harness.slack.parents().count == 1)
        let ready = harness.slack.replies(to: parent)[0]
        #expect(ready.key?.hasSuffix("-ready") == true)
        #expect(ready.text.contains("web-01.onetouch.test is ready (role web, instance i-"))
        #expect(ready.text.contains("slowest step: "))
        let fields = ready.blocks.last?["fields"]?.array?.compactMap { $0["text"]?.string } ?? []
        #expect(fields.contains { $0.hasPrefix("*Instance*\ni-") })
        #expect(fields.contains { $0.hasPrefix("*Address*\n") })
        #expect(fields.contains { $0.hasPrefix("*Total time*\n") })
        #expect(fields.contains { $0.hasPrefix("*Slowest step*\n") })
        let status = try harness.announcer().announcements(hostID: host.id)
        #expect(status.owed == 0 && status.sent == 1 && status.threadTs == parent.ts)
        #expect(!harness.logs.all.contains { $0.contains(FakeSlack.token) }, "the bot token is never logged")
    }

    @Test func aFailureIsAReplyWithTheStepTheReasonTheLogAndTheCommand() async throws {
        let harness = try SlackHarness()
        let task = harness.start(try harness.announcer())
        defer { task.cancel() }
        try await harness.bed.create("db-02")
        for _ in 0..<50 {
            await harness.bed.engine.runUntilIdle()
            let row = try harness.bed.host("db-02")
            if row.hostState == .waiting(.configPull) { break }
            _ = try await harness.bed.simulateHosts()
            if let next = await harness.bed.engine.nextDue(), next > harness.bed.clock.now { harness.bed.clock.set(next) }
        }
        let waiting = try harness.bed.host("db-02")
        try #require(waiting.hostState == .waiting(.configPull))
        let log = (1...30).map { "line \($0)" }.joined(separator: "\n") + "\nERROR! role web: <failed> & stopped"
        _ = try await harness.bed.service.report(
            hostID: waiting.id, token: try harness.bed.tokenFor(waiting).reveal(),
            .init(stage: .failed, exitStatus: 2, logTail: log))
        await harness.bed.engine.runUntilIdle()
        #expect(try harness.bed.host("db-02").hostState.kind == .failed)
        try await eventually("the failure reply") {
            harness.slack.messages.contains { $0.key == nil ? false : $0.key!.hasPrefix(waiting.id) && $0.key!.hasSuffix("-failed") }
        }
        let failure = harness.slack.messages.first { $0.key?.hasPrefix(waiting.id) == true && $0.key?.hasSuffix("-failed") == true }!
        #expect(failure.threadTS != nil)
        let reason = try #require(try harness.bed.host("db-02").reason)
        let command = Announcements.fixCommand(reason: reason, hostName: "db-02")
        #expect(command.hasPrefix("onetouch retry db-02 --from "), "the command the engine's reason names")
        let step = String(command.split(separator: " ").last!)
        #expect(failure.text.contains("db-02.onetouch.test failed at config-pull"))
        #expect(failure.text.hasSuffix("Then run: \(command)"))
        let blocks = failure.blocks.compactMap { $0["text"]?["text"]?.string }
        #expect(blocks.contains { $0.contains("*Last lines the host sent*") && $0.contains("line 30") && !$0.contains("line 15\n") })
        #expect(blocks.contains { $0.contains("&lt;failed&gt; &amp; stopped") }, "the host's text is escaped")
        #expect(blocks.contains { $0.contains("`\(command)`") && $0.contains("`/onetouch retry db-02 from=\(step)`") })
    }

    @Test func destroyIsAnnouncedWithWhoAskedForIt() async throws {
        let harness = try SlackHarness()
        let task = harness.start(try harness.announcer())
        defer { task.cancel() }
        let host = try await harness.ready("web-03")
        _ = try await harness.bed.service.destroy("web-03", keepVolume: true, actor: "admin")
        try await harness.bed.settle()
        #expect(try harness.bed.host("web-03").hostState == .destroyed)
        try await eventually("the destroyed reply") {
            harness.slack.messages.contains { $0.key?.hasPrefix(host.id) == true && $0.key?.hasSuffix("-destroyed") == true }
        }
        let parent = harness.slack.parents()[0]
        let replies = harness.slack.replies(to: parent)
        #expect(replies.map { $0.key?.split(separator: "-").last.map(String.init) ?? "" } == ["ready", "command", "destroyed"])
        #expect(replies[1].text.contains("destroy requested (the CLI)"))
        #expect(replies[2].text.contains("web-03.onetouch.test was destroyed; its data volume vol-"))
        try await eventually("the parent shows destroyed") { harness.slack.parents()[0].text.hasSuffix("destroyed") }
    }

    @Test func aCrashBetweenPostAndRecordDoesNotPostAgain() async throws {
        let harness = try SlackHarness()
        var task = harness.start(try harness.announcer())
        let host = try await harness.bed.create("web-04")
        try await eventually("the parent") { harness.slack.parents().count == 1 }
        // The ready reply reaches Slack, and the process dies before it records that.
        harness.slack.inject(.hangAfterPosting, into: "chat.postMessage")
        try await harness.bed.settle()
        try await eventually("the ready reply in Slack") { harness.slack.messages.count == 2 }
        task.cancel()
        _ = await task.result
        #expect(try harness.announcer().announcements(hostID: host.id).owed == 1, "recorded as sending, not sent")

        task = harness.start(try harness.announcer())
        defer { task.cancel() }
        try await eventually("the restarted announcer finds its reply") {
            try harness.announcer().announcements(hostID: host.id).owed == 0
        }
        try await Task.sleep(for: .milliseconds(100))
        #expect(harness.slack.messages.count == 2, "no second ready message")
        #expect(harness.slack.requests("conversations.replies").count == 1, "looked the reply up in the thread")
        #expect(harness.slack.requests("chat.postMessage").count == 2)
    }

    @Test func aCrashWhilePostingTheParentDoesNotOpenASecondThread() async throws {
        let harness = try SlackHarness()
        harness.slack.inject(.loseAnswer, into: "chat.postMessage")
        var task = harness.start(try harness.announcer())
        let host = try await harness.bed.create("web-05")
        try await eventually("the parent in Slack") { harness.slack.parents().count == 1 }
        task.cancel()
        _ = await task.result
        task = harness.start(try harness.announcer())
        defer { task.cancel() }
        try await eventually("the parent found") { try harness.announcer().announcements(hostID: host.id).threadTs != nil }
        #expect(harness.slack.parents().count == 1)
        #expect(harness.slack.requests("conversations.history").count >= 1)
    }

    @Test func retryAfterIsWaitedOutBeforeAnyRequest() async throws {
        let harness = try SlackHarness()
        harness.slack.inject(.status(429, retryAfter: "1", body: #"{"ok":false,"error":"ratelimited"}"#), into: "chat.postMessage")
        let task = harness.start(try harness.announcer())
        defer { task.cancel() }
        try await harness.bed.create("web-06")
        try await eventually("the parent after the rate limit") { harness.slack.parents().count == 1 }
        let requests = harness.slack.requests
        let limited = try #require(requests.first { $0.method == "chat.postMessage" })
        let next = try #require(requests.dropFirst().first)
        #expect(next.method == "chat.postMessage")
        #expect((next.at - limited.at).milliseconds >= 1000, "no request before Retry-After elapsed")
        #expect((next.at - limited.at).milliseconds < 4000, "soon after Retry-After, not after a long backoff")
    }

    @Test(arguments: ["invalid_auth", "token_revoked", "channel_not_found", "not_in_channel", "is_archived", "missing_scope"])
    func aPermanentErrorStopsDeliveryAfterOneTry(code: String) async throws {
        let harness = try SlackHarness()
        harness.slack.inject(.error(code), into: "chat.postMessage")
        let announcer = try harness.announcer()
        let task = harness.start(announcer)
        defer { task.cancel() }
        let host = try await harness.ready("web-07")
        try await eventually("the stop") { announcer.problem != nil }
        try await Task.sleep(for: .milliseconds(300))
        #expect(harness.slack.requests.count == 1, "one try, then nothing")
        #expect(announcer.problem?.code == code)
        #expect(try harness.bed.host("web-07").hostState == .ready, "Slack never holds a host back")
        let status = try announcer.announcements(hostID: host.id)
        #expect(status.delivery.hasPrefix("stopped: "))
        #expect(status.owed == 2, "the parent and the ready reply wait for a restart")
        #expect(harness.logs.all.contains { $0.contains("Slack announcements stopped") && $0.contains(code) })
    }

    @Test func aRefusedMessageIsDroppedAndTheOthersGoOn() async throws {
        let harness = try SlackHarness()
        let task = harness.start(try harness.announcer())
        defer { task.cancel() }
        let host = try await harness.bed.create("web-08")
        try await eventually("the parent") { harness.slack.parents().count == 1 }
        harness.slack.inject(.error("invalid_blocks"), into: "chat.postMessage")
        _ = try await harness.bed.service.destroy("web-08", keepVolume: false, actor: "admin")
        try await harness.bed.settle()
        try await eventually("the destroyed reply") { harness.slack.messages.contains { $0.key?.hasSuffix("-destroyed") == true } }
        let status = try harness.announcer().announcements(hostID: host.id)
        #expect(status.dropped.count == 1 && status.dropped[0].hasPrefix("invalid_blocks"))
        let commands = harness.slack.messages.filter { $0.key?.hasSuffix("-command") == true }
        #expect(commands.count == 0, "the refused one is not retried")
    }

    @Test func aSlackOutageDelaysMessagesNotHostsAndKeepsTheirOrder() async throws {
        let harness = try SlackHarness()
        harness.slack.inject(.status(503), into: "chat.postMessage", times: 6)
        let task = harness.start(try harness.announcer())
        defer { task.cancel() }
        try await harness.ready("web-09")
        #expect(try harness.bed.host("web-09").hostState == .ready)
        try await eventually("the parent and the ready reply after the outage") { harness.slack.messages.count == 2 }
        #expect(harness.slack.messages[0].threadTS == nil && harness.slack.messages[1].threadTS == harness.slack.messages[0].ts)
        let posts = harness.slack.requests("chat.postMessage")
        #expect(posts.count == 8)
        let gaps = zip(posts.dropFirst(), posts).map { ($0.at - $1.at).milliseconds }
        #expect(gaps.prefix(6).allSatisfy { $0 >= 95 }, "each try after a 503 waits its back-off (here 100 to 200 ms): \(gaps)")
        #expect(harness.slack.requests("conversations.history").count == 6, "a 503 may have posted: looked up before each retry")
    }

    @Test func aMessageInAnOpenThreadGoesBeforeOtherHostsThreadOpenings() async throws {
        let harness = try SlackHarness()
        let task = harness.start(try harness.announcer(SlackHarness.settings(postInterval: .milliseconds(300))))
        defer { task.cancel() }
        let first = try await harness.bed.create("web-a")
        try await eventually("web-a's thread") { harness.slack.parents().count == 1 }
        try await harness.bed.create("web-b")
        try await harness.bed.create("web-c")
        _ = try await harness.bed.service.destroy("web-a", keepVolume: false, actor: "admin")
        try await eventually("four posts") { harness.slack.messages.count == 4 }
        #expect(
            harness.slack.messages.map { $0.key ?? "" }.map { $0.hasPrefix(first.id) ? String($0.suffix(7)) : "other-parent" } == [
                "-parent", "command", "other-parent", "other-parent",
            ], "web-a's reply did not wait behind web-b's and web-c's thread openings")
    }

    @Test func fiftyHostsReadyAtOnceStayWithinThePaceLoseNothingAndKeepOrder() async throws {
        let harness = try SlackHarness()
        let interval = Duration.milliseconds(25)
        let task = harness.start(try harness.announcer(SlackHarness.settings(postInterval: interval)))
        defer { task.cancel() }
        var ids: [String] = []
        for index in 1...50 { ids.append(try await harness.bed.create(String(format: "app-%02d", index)).id) }
        try await eventually("50 parents") { harness.slack.parents().count == 50 }
        try await harness.bed.settle()
        try await eventually("50 ready replies", timeout: .seconds(30)) {
            harness.slack.messages.filter { $0.key?.hasSuffix("-ready") == true }.count == 50
        }
        let posts = harness.slack.requests("chat.postMessage")
        #expect(posts.count == 100, "none lost, none twice")
        let gaps = zip(posts.dropFirst(), posts).map { ($0.at - $1.at).milliseconds }
        let smallest = try #require(gaps.min())
        #expect(smallest >= interval.milliseconds - 1, "one post per interval in the channel: \(smallest) ms")
        let parents = Dictionary(uniqueKeysWithValues: harness.slack.parents().map { ($0.key!, $0) })
        // One snapshot, and messages found by their ts: a parent is edited (chat.update) as its host
        // settles, so the value read a moment ago may no longer equal the one in the list.
        let messages = harness.slack.messages
        for id in ids {
            let parent = try #require(parents["\(id)-parent"])
            let replies = harness.slack.replies(to: parent)
            #expect(replies.count == 1 && replies[0].key?.hasPrefix(id) == true, "the ready reply is in its own host's thread")
            let reply = try #require(replies.first)
            let parentPosition = try #require(messages.firstIndex { $0.ts == parent.ts })
            let replyPosition = try #require(messages.firstIndex { $0.ts == reply.ts })
            #expect(parentPosition < replyPosition)
        }
    }

    @Test func twoAnnouncersOnOneDatabaseNeverBothPost() async throws {
        let harness = try SlackHarness()
        let first = try SlackAnnouncer(
            settings: SlackHarness.settings(), transport: harness.slack, databasePath: harness.bed.databasePath,
            logger: harness.logs.logger(), owner: "first", holderIsGone: { _ in false })
        let second = try SlackAnnouncer(
            settings: SlackHarness.settings(), transport: harness.slack, databasePath: harness.bed.databasePath,
            logger: harness.logs.logger(), owner: "second", holderIsGone: { _ in false })
        let a = harness.start(first)
        try await Task.sleep(for: .milliseconds(100))
        let b = harness.start(second)
        defer {
            a.cancel()
            b.cancel()
        }
        try await harness.ready("web-10")
        try await eventually("both messages") { harness.slack.messages.count == 2 }
        try await Task.sleep(for: .milliseconds(200))
        #expect(harness.slack.messages.count == 2)
        #expect(harness.logs.all.contains { $0.contains("waiting for its lease") })
    }
}

/// Webhook mode: no threads, no look-up; a lost answer may repeat a message once, never twice.
@Suite(.serialized)
struct WebhookTests {
    @Test func webhookPostsTheAnnouncementsWithoutThreads() async throws {
        let harness = try SlackHarness()
        let task = harness.start(try harness.announcer(SlackHarness.settings(webhook: true)))
        defer { task.cancel() }
        try await harness.ready("web-20")
        _ = try await harness.bed.service.destroy("web-20", keepVolume: false, actor: "admin")
        try await harness.bed.settle()
        try await eventually("two webhook messages") { harness.slack.webhookMessages.count == 2 }
        try await Task.sleep(for: .milliseconds(100))
        let texts = harness.slack.webhookMessages.map(\.text)
        #expect(texts.count == 2)
        #expect(texts[0].contains("web-20.onetouch.test is ready"))
        #expect(texts[1].contains("web-20.onetouch.test was destroyed"))
        #expect(harness.slack.requests.allSatisfy { $0.method == "webhook" })
    }

    @Test func aLostWebhookAnswerRepeatsTheMessageOnceAtMost() async throws {
        let harness = try SlackHarness()
        harness.slack.inject(.loseAnswer, into: "webhook", times: 2)
        let task = harness.start(try harness.announcer(SlackHarness.settings(webhook: true)))
        defer { task.cancel() }
        let host = try await harness.ready("web-21")
        try await eventually("the message given up") { try harness.announcer().announcements(hostID: host.id).dropped.count == 1 }
        try await Task.sleep(for: .milliseconds(300))
        #expect(harness.slack.requests("webhook").count == 2, "sent, sent again once, then not a third time")
        #expect(harness.slack.webhookMessages.count == 2)
    }

    @Test func aWebhookThatIsGoneStopsDelivery() async throws {
        let harness = try SlackHarness()
        harness.slack.inject(.error("no_service", status: 404), into: "webhook")
        let announcer = try harness.announcer(SlackHarness.settings(webhook: true))
        let task = harness.start(announcer)
        defer { task.cancel() }
        try await harness.ready("web-22")
        try await eventually("the stop") { announcer.problem != nil }
        #expect(announcer.problem?.code == "no_service")
        #expect(announcer.problem?.fix.contains("notifier.webhook_url") == true)
        try await Task.sleep(for: .milliseconds(200))
        #expect(harness.slack.requests.count == 1)
        #expect(!harness.logs.all.contains { $0.contains("secretpart") }, "the webhook URL is never logged")
    }
}
