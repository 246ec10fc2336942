import Foundation
import Testing

@testable import OneTouchCore
@testable import OneTouchSlack

/// The pure parts: what a message says, when the next request may go, what a command means.
struct AnnouncementTests {
    let host = HostSnapshot(
        id: "h-0001", name: "web-01", fqdn: "web-01.onetouch.test", role: "web", instanceID: "i-0abc", privateIP: "10.0.1.23",
        volumeID: "vol-1", keepVolume: false)

    static let start = Date(timeIntervalSince1970: 1_800_000_000)

    static func event(
        _ id: Int64, _ seconds: TimeInterval, from: String?, to: String, step: Step?, reason: String = "", actor: String = "engine"
    )
        -> EventRecord
    {
        EventRecord(
            id: id, hostID: "h-0001", at: start.addingTimeInterval(seconds), fromState: from, toState: to, step: step, reason: reason,
            actor: actor)
    }

    static var readyHistory: [EventRecord] {
        [
            event(1, 0, from: nil, to: "pending", step: nil, reason: "created with role web", actor: "slack:U0123ABCD"),
            event(2, 1, from: "pending", to: "running(provision)", step: .provision),
            event(3, 31, from: "running(provision)", to: "running(preregister)", step: .preregister, reason: "provision done"),
            event(4, 33, from: "running(preregister)", to: "running(bootstrap)", step: .bootstrap),
            event(5, 34, from: "running(bootstrap)", to: "waiting(bootstrap)", step: .bootstrap),
            event(6, 94, from: "waiting(bootstrap)", to: "running(attach-volume)", step: .attachVolume),
            event(7, 104, from: "running(attach-volume)", to: "running(config-pull)", step: .configPull),
            event(8, 105, from: "running(config-pull)", to: "waiting(config-pull)", step: .configPull),
            event(9, 228, from: "waiting(config-pull)", to: "running(complete)", step: .complete),
            event(10, 232, from: "running(complete)", to: "ready", step: nil, reason: "complete done"),
        ]
    }

    @Test func theTimelineSumsEachStepAndFindsTheSlowest() {
        let timeline = HostTimeline(createdAt: Self.start, events: Self.readyHistory)
        #expect(timeline.kind == .ready)
        #expect(timeline.elapsed == 232)
        #expect(timeline.stepSeconds[.provision] == 30)
        #expect(timeline.stepSeconds[.bootstrap] == 61)
        #expect(timeline.stepSeconds[.configPull] == 124)
        #expect(timeline.slowest?.step == .configPull)
        #expect(timeline.slowest?.seconds == 124)
    }

    @Test func timeSpentFailedIsNotCountedAgainstTheStep() {
        var events = Array(Self.readyHistory.prefix(8))
        events.append(Self.event(9, 200, from: "waiting(config-pull)", to: "failed(config-pull)", step: .configPull, reason: "exit 2"))
        events.append(
            Self.event(
                10, 5000, from: "failed(config-pull)", to: "running(config-pull)", step: .configPull, reason: "resume requested",
                actor: "admin"))
        events.append(Self.event(11, 5010, from: "running(config-pull)", to: "running(complete)", step: .complete))
        let timeline = HostTimeline(createdAt: Self.start, events: events)
        #expect((timeline.stepSeconds[.configPull] ?? 0).rounded() == 106.0, "1 s before, 95 s until the failure, 10 s after the resume")
    }

    @Test func readySaysWhereTheHostIsAndWhatTookLongest() {
        let timeline = HostTimeline(createdAt: Self.start, events: Self.readyHistory)
        let message = Announcements.ready(host, timeline: timeline, key: "h-0001-e10-ready")
        #expect(
            message.text
                == "web-01.onetouch.test is ready (role web, instance i-0abc, address 10.0.1.23) after 3m52s; slowest step: config-pull (2m04s)"
        )
        #expect(message.key == "h-0001-e10-ready")
        #expect(message.blocks[0]["text"]?["text"]?.string == ":white_check_mark: *web-01.onetouch.test is ready* after 3m52s")
        let fields = message.blocks[1]["fields"]?.array?.compactMap { $0["text"]?.string }
        #expect(
            fields == [
                "*Role*\nweb", "*Instance*\ni-0abc", "*Address*\n10.0.1.23", "*Total time*\n3m52s", "*Slowest step*\nconfig-pull (2m04s)",
            ])
        let body = message.postBody(channel: "C0TESTCHAN1", threadTS: "1.2")
        #expect(body["thread_ts"]?.string == "1.2")
        #expect(body["metadata"]?["event_type"]?.string == "onetouch_announcement")
        #expect(body["metadata"]?["event_payload"]?["key"]?.string == "h-0001-e10-ready")
    }

    @Test func theParentShowsTheStepAndTheTimeSoFarThenTheEnd() {
        let running = HostTimeline(createdAt: Self.start, events: Array(Self.readyHistory.prefix(8)))
        let during = Announcements.parent(host, timeline: running, requestedBy: "slack:U0123ABCD")
        #expect(during.text == "web-01.onetouch.test (role web): waiting for the host in config-pull, 1m45s so far")
        #expect(during.blocks[1]["elements"]?.array?.first?["text"]?.string == "i-0abc  ·  10.0.1.23  ·  asked for by <@U0123ABCD>")
        let done = Announcements.parent(host, timeline: HostTimeline(createdAt: Self.start, events: Self.readyHistory), requestedBy: nil)
        #expect(done.text == "web-01.onetouch.test (role web): ready after 3m52s")
    }

    @Test func aFailureCarriesTheCommandItsReasonNamesAndTheSlackEquivalent() {
        let reason =
            "the host reported a failure during config-pull (exit status 2): x; `onetouch status web-01` shows its log tail; fix the cause, then run `onetouch retry web-01 --from config-pull`"
        let message = Announcements.failure(host, paused: false, step: .configPull, reason: reason, logTail: "a\nb <c>\n\n", key: "k")
        #expect(message.text.hasSuffix("Then run: onetouch retry web-01 --from config-pull"))
        let texts = message.blocks.compactMap { $0["text"]?["text"]?.string }
        #expect(texts[0].hasPrefix(":x: *web-01.onetouch.test failed at config-pull*\n"))
        #expect(texts[1] == "*Last lines the host sent*\n```\na\nb &lt;c&gt;\n```")
        #expect(
            texts[2]
                == "*Once the cause is fixed:* `onetouch retry web-01 --from config-pull`\nor here: `/onetouch retry web-01 from=config-pull`"
        )
    }

    @Test func aReasonWithoutACommandGetsResume() {
        #expect(Announcements.fixCommand(reason: "the cloud refused: quota", hostName: "web-01") == "onetouch resume web-01")
        #expect(Announcements.slashEquivalent(of: "onetouch resume web-01") == "/onetouch resume web-01")
        #expect(Announcements.slashEquivalent(of: "onetouch destroy web-01") == nil)
    }

    @Test func aLongLogKeepsItsLastFifteenLinesWithoutBreakingTheFence() {
        let log = (1...100).map { "line \($0) ```" }.joined(separator: "\n")
        let tail = Announcements.tailLines(log)!
        #expect(tail.hasPrefix("line 86 '''"))
        #expect(tail.hasSuffix("line 100 '''"))
        #expect(!tail.contains("```"))
        #expect(Announcements.tailLines(String(repeating: "x", count: 10_000))!.count == 2400)
    }

    @Test func peopleAndHostsCannotMentionTheChannelOrForgeLinks() {
        let message = Announcements.command(host, reason: "retry requested <!channel> <https://evil|click>", actor: "admin", key: "k")
        let text = message.blocks[0]["elements"]?.array?.first?["text"]?.string ?? ""
        #expect(text == "retry requested &lt;!channel&gt; &lt;https://evil|click&gt; by the CLI")
    }

    @Test func aCommandNamesTheAdminTokenThatGaveIt() {
        let message = Announcements.command(host, reason: "destroy requested", actor: "admin:alice", key: "k")
        #expect(message.blocks[0]["elements"]?.array?.first?["text"]?.string == "destroy requested by the CLI as alice")
    }

    @Test func durationsReadLikeACountdown() {
        #expect(formatDuration(42) == "42s")
        #expect(formatDuration(252) == "4m12s")
        #expect(formatDuration(3720) == "1h02m")
    }
}

struct PlannerTests {
    let context = EventContext(
        host: HostSnapshot(id: "h-0001", name: "web-01", fqdn: "web-01.onetouch.test", role: "web"),
        timeline: HostTimeline(createdAt: AnnouncementTests.start, events: AnnouncementTests.readyHistory), requestedBy: nil,
        failureLog: nil)

    @Test func everyEventUpdatesTheParentButOnlyWhatPeopleMustSeeIsAReply() {
        let step = AnnouncementTests.event(3, 31, from: "running(provision)", to: "running(preregister)", step: .preregister)
        let plan = SlackPlanner.plan(step, context: context, bot: true)
        #expect(plan.parent?.key == "h-0001-parent")
        #expect(plan.messages.isEmpty)
        let ready = SlackPlanner.plan(AnnouncementTests.readyHistory.last!, context: context, bot: true)
        #expect(ready.messages.map(\.key) == ["h-0001-e10-ready"])
    }

    @Test func aPersonsCommandIsAReplyInBotModeOnly() {
        let resume = AnnouncementTests.event(
            12, 300, from: "failed(config-pull)", to: "running(config-pull)", step: .configPull, reason: "resume requested",
            actor: "slack:U0123ABCD")
        #expect(SlackPlanner.plan(resume, context: context, bot: true).messages.map(\.key) == ["h-0001-e12-command"])
        #expect(SlackPlanner.plan(resume, context: context, bot: false).messages.isEmpty)
    }

    @Test func aDriftTransitionIsOneMessageInBothModesAndNeverACommandReply() {
        let failing = AnnouncementTests.event(
            30, 900, from: "ready", to: "ready", step: nil,
            reason: "configuration drift: web-01 is failing its configuration runs (ansible-pull exited 2)", actor: "drift")
        for bot in [true, false] {
            let plan = SlackPlanner.plan(failing, context: context, bot: bot)
            #expect(plan.messages.map(\.key) == ["h-0001-e30-drift"])
            #expect(plan.messages.first?.text.contains("is failing its configuration runs") == true)
        }
    }

    @Test func webhookModeSaysReadyFailedPausedAndDestroyed() {
        let cases: [(String, String?)] = [
            ("ready", "ready"), ("failed(config-pull)", "failed"), ("paused(provision)", "paused"), ("destroyed", "destroyed"),
            ("running(complete)", nil),
        ]
        for (to, what) in cases {
            let event = AnnouncementTests.event(20, 400, from: "running(complete)", to: to, step: nil, reason: "why")
            let plan = SlackPlanner.plan(event, context: context, bot: false)
            #expect(plan.parent == nil)
            #expect(plan.messages.map(\.key) == (what.map { ["h-0001-e20-\($0)"] } ?? []), "\(to)")
        }
    }
}

struct DeliveryGateTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func gate() -> DeliveryGate {
        DeliveryGate(postInterval: .seconds(1), updateInterval: .milliseconds(1200), maxBackoff: .seconds(60))
    }

    @Test func postsAreOneSecondApartAndUpdatesPacedApart() {
        var gate = gate()
        #expect(gate.earliest(.post)! <= now)
        gate.started(.post, at: now)
        #expect(gate.earliest(.post) == now.addingTimeInterval(1))
        #expect(gate.earliest(.update)! <= now, "updates have their own pace")
        gate.started(.update, at: now)
        #expect(gate.earliest(.update) == now.addingTimeInterval(1.2))
    }

    @Test func theNextPostWaitsItsIntervalFromTheAnswerOfASlowOne() {
        var gate = gate()
        gate.started(.post, at: now)
        _ = gate.finished(.ok(.null), of: .post, at: now.addingTimeInterval(0.3), jitter: 0)
        #expect(gate.earliest(.post) == now.addingTimeInterval(1.3), "arrivals stay a second apart")
    }

    @Test func retryAfterHoldsEveryKindOfRequest() {
        var gate = gate()
        gate.started(.post, at: now)
        #expect(gate.finished(.rateLimited(retryAfter: .seconds(30)), of: .post, at: now, jitter: 0) == .retry)
        for kind in [DeliveryGate.Request.post, .update, .read] {
            #expect(gate.earliest(kind) == now.addingTimeInterval(30))
        }
        #expect(gate.describe(now: now) == "rate limited by Slack for 30s more")
        #expect(gate.finished(.ok(.null), of: .post, at: now.addingTimeInterval(31), jitter: 0) == .done)
        #expect(gate.earliest(.read)! <= now)
    }

    @Test func outagesBackOffDoublingUpToTheCeiling() {
        var gate = gate()
        var delays: [TimeInterval] = []
        for _ in 0..<8 {
            _ = gate.finished(.unavailable("HTTP 503", mayHaveSent: true), of: .post, at: now, jitter: 0.999_999)
            delays.append(gate.earliest(.read)!.timeIntervalSince(now).rounded())
        }
        #expect(delays == [1, 2, 4, 8, 16, 32, 60, 60])
        _ = gate.finished(.ok(.null), of: .post, at: now, jitter: 0)
        _ = gate.finished(.unavailable("HTTP 503", mayHaveSent: true), of: .post, at: now, jitter: 0)
        #expect(gate.earliest(.read) == now.addingTimeInterval(0.5), "a success starts the back-off over; jitter keeps half")
    }

    @Test func aCredentialOrChannelErrorStopsEverythingAMessageErrorOnlyThatMessage() {
        var gate = gate()
        let message = SlackProblem.classify("invalid_blocks", webhook: false)!
        #expect(gate.finished(.refused(message), of: .post, at: now, jitter: 0) == .drop(message))
        #expect(gate.earliest(.post) != nil)
        let channel = SlackProblem.classify("not_in_channel", webhook: false)!
        #expect(gate.finished(.refused(channel), of: .post, at: now, jitter: 0) == .stop(channel))
        #expect(gate.earliest(.post) == nil && gate.earliest(.update) == nil && gate.earliest(.read) == nil)
        #expect(gate.describe(now: now).hasPrefix("stopped: Slack refuses to post in the configured channel (not_in_channel)"))
    }

    @Test(arguments: [
        "invalid_payload", "no_text", "channel_not_found", "channel_is_archived", "not_in_channel", "action_prohibited", "no_service",
        "invalid_auth", "token_revoked",
    ])
    func everyPermanentErrorOfTheIssueIsPermanent(code: String) {
        #expect(SlackProblem.classify(code, webhook: true) != nil)
        #expect(SlackProblem.classify(code, webhook: false) != nil)
    }

    @Test func rateLimitsAndOutagesAreNotPermanent() {
        for code in ["ratelimited", "service_unavailable", "fatal_error", "internal_error", "request_timeout"] {
            #expect(SlackProblem.classify(code, webhook: false) == nil)
        }
    }
}

struct ChatCommandTests {
    @Test func readsEveryVerb() throws {
        #expect(try ChatCommand.parse("create web-01 role=web") == .create(name: "web-01", role: "web"))
        #expect(try ChatCommand.parse("  create web-01 --role web ") == .create(name: "web-01", role: "web"))
        #expect(try ChatCommand.parse("status web-01") == .status(name: "web-01"))
        #expect(try ChatCommand.parse("list") == .list(state: nil))
        #expect(try ChatCommand.parse("list failed") == .list(state: .failed))
        #expect(try ChatCommand.parse("resume web-01") == .resume(name: "web-01"))
        #expect(try ChatCommand.parse("retry web-01 from=config-pull") == .retry(name: "web-01", from: .configPull))
        #expect(try ChatCommand.parse("destroy web-01") == .destroy(name: "web-01"))
        #expect(try ChatCommand.parse("") == .help)
    }

    @Test(arguments: [
        "create web-01", "create Web_01 role=web", "retry web-01", "retry web-01 from=terminate", "destroy", "destroy a b",
        "list nonsense", "reboot web-01", "status web-01 force=yes",
    ])
    func refusesWhatItCannotRead(text: String) {
        #expect(throws: ChatCommand.Unreadable.self) { try ChatCommand.parse(text) }
    }
}

struct SlackClientTests {
    struct Canned: HTTPTransport {
        let response: HTTPResponseData?
        func send(_ request: HTTPRequestData, timeout: Duration) async throws -> HTTPResponseData {
            guard let response else { throw HTTPTransportError.connectionFailed("connect to hooks.slack.test/services/T/B/SECRET refused") }
            return response
        }
    }

    func client(_ response: HTTPResponseData?) -> SlackClient {
        SlackClient(transport: Canned(response: response), apiURL: URL(string: "https://slack.test/api/")!, token: Secret("xoxb-1"))
    }

    @Test func aWebAPIErrorIsHTTP200WithOkFalse() async {
        let outcome = await client(HTTPResponseData(status: 200, body: Data(#"{"ok":false,"error":"token_revoked"}"#.utf8)))
            .call("chat.postMessage", json: [:])
        guard case .refused(let problem) = outcome else {
            Issue.record("expected refused, got \(outcome)")
            return
        }
        #expect(problem.code == "token_revoked" && problem.scope == .integration)
        #expect(problem.fix.contains("notifier.bot_token"))
    }

    @Test func retryAfterIsReadInSeconds() async {
        let outcome = await client(HTTPResponseData(status: 429, headers: [("retry-after", "7")])).call("chat.update", json: [:])
        #expect(outcome == .rateLimited(retryAfter: .seconds(7)))
        let missing = await client(HTTPResponseData(status: 429)).call("chat.update", json: [:])
        #expect(missing == .rateLimited(retryAfter: .seconds(5)))
    }

    @Test func aWebhookErrorIsItsBodyAndItsURLIsNeverRepeated() async {
        let gone = await client(HTTPResponseData(status: 410, body: Data("channel_is_archived".utf8)))
            .webhook(Secret("https://hooks.slack.test/services/T/B/SECRET"), [:])
        guard case .refused(let problem) = gone else {
            Issue.record("expected refused")
            return
        }
        #expect(problem.code == "channel_is_archived")
        let down = await client(nil).webhook(Secret("https://hooks.slack.test/services/T/B/SECRET"), [:])
        guard case .unavailable(let reason, let mayHaveSent) = down else {
            Issue.record("expected unavailable")
            return
        }
        #expect(!reason.contains("SECRET") && reason.contains("<redacted>"))
        #expect(!mayHaveSent, "a webhook connection that failed did not deliver")
        let serverError = await client(HTTPResponseData(status: 500, body: Data("rollup_error".utf8))).webhook(
            Secret("https://x.test/services/1"), [:])
        #expect(serverError == .unavailable("Slack answered HTTP 500", mayHaveSent: false))
    }
}
