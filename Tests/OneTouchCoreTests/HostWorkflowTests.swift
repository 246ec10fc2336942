import OneTouchCore
import Testing

@Suite("Host workflow transitions")
struct HostWorkflowTests {
    static let reason = "r"

    /// Every state a host can be in (one representative per step where the state has one).
    static let states: [HostState] =
        [.pending, .ready, .destroyed]
        + Step.provisioning.flatMap { [HostState.running($0), .failed($0, reason: reason), .paused($0, reason: reason)] }
        + [Step.bootstrap, .configPull].map { HostState.waiting($0) }
        + Step.teardown.flatMap { [HostState.destroying($0), .failed($0, reason: reason), .paused($0, reason: reason)] }

    static let inputs: [HostWorkflow.Input] =
        [.begin, .stepSucceeded, .stepWaiting, .stepFailed(reason: reason), .needsHuman(reason: reason), .resume, .destroy]
        + Step.allCases.map { .retry(from: $0) }  // teardown steps too: never a step to retry from

    /// The expected result of every (state, input) pair, written out independently of the table.
    static func expected(_ state: HostState, _ input: HostWorkflow.Input) -> HostState? {
        switch (state, input) {
        case (.pending, .begin): return .running(.provision)
        case (.running(let s), .stepSucceeded), (.waiting(let s), .stepSucceeded):
            return s == .complete ? .ready : .running(s.next!)
        case (.destroying(let s), .stepSucceeded): return s == .deleteVolume ? .destroyed : .destroying(s.next!)
        case (.running(.bootstrap), .stepWaiting): return .waiting(.bootstrap)
        case (.running(.configPull), .stepWaiting): return .waiting(.configPull)
        case (.running(let s), .stepFailed), (.waiting(let s), .stepFailed), (.destroying(let s), .stepFailed):
            return .failed(s, reason: reason)
        case (.running(let s), .needsHuman), (.waiting(let s), .needsHuman), (.destroying(let s), .needsHuman):
            return .paused(s, reason: reason)
        case (.failed(let s, _), .resume), (.paused(let s, _), .resume):
            return s.isTeardown ? .destroying(s) : .running(s)
        case (.failed(let s, _), .retry(let from)), (.paused(let s, _), .retry(let from)):
            return !s.isTeardown && from <= s ? .running(from) : nil
        case (.ready, .retry(let from)): return from == .provision ? .running(from) : nil
        case (.destroying, .destroy), (.destroyed, .destroy): return nil
        case (_, .destroy): return .destroying(.deregister)
        default: return nil
        }
    }

    @Test("every allowed and forbidden transition", arguments: states)
    func everyTransition(state: HostState) {
        for input in Self.inputs {
            var workflow = HostWorkflow(state: state)
            let expected = Self.expected(state, input)
            do {
                _ = try workflow.apply(input)
                #expect(workflow.state == expected, "\(state) + \(input)")
            } catch {
                #expect(expected == nil, "\(state) + \(input) was refused but should give \(String(describing: expected))")
                #expect(workflow.state == state, "a refused input must not change the state")
            }
        }
    }

    @Test func happyPathVisitsEveryProvisioningStepInOrder() throws {
        var workflow = HostWorkflow()
        var visited: [HostState] = []
        #expect(try workflow.apply(.begin).runStep == .provision)
        while workflow.state != .ready {
            visited.append(workflow.state)
            if let step = workflow.state.step, step.isWaiting, case .running = workflow.state {
                _ = try workflow.apply(.stepWaiting)
                visited.append(workflow.state)
            }
            _ = try workflow.apply(.stepSucceeded)
        }
        #expect(
            visited == [
                .running(.provision), .running(.preregister), .running(.bootstrap), .waiting(.bootstrap),
                .running(.attachVolume), .running(.configPull), .waiting(.configPull), .running(.complete),
            ])
    }

    typealias Effects = HostWorkflow.Effects

    /// What each kind of move calls for: the decisions the engine and the service only carry out.
    @Test(arguments: [
        (HostState.pending, HostWorkflow.Input.begin, Effects(runStep: .provision)),
        (.running(.provision), .stepSucceeded, Effects(runStep: .preregister)),
        (.running(.bootstrap), .stepWaiting, Effects(runStep: .bootstrap)),
        (.running(.complete), .stepSucceeded, Effects(wipeOneTimePassword: true, revokeHostToken: true)),
        (.waiting(.configPull), .stepFailed(reason: "r"), Effects(wipeOneTimePassword: true)),
        (.waiting(.configPull), .needsHuman(reason: "r"), Effects()),
        (.paused(.provision, reason: "r"), .resume, Effects(runStep: .provision, staleReports: [.failed])),
        (
            .waiting(.bootstrap), .destroy,
            Effects(runStep: .deregister, wipeOneTimePassword: true, revokeHostToken: true, staleReports: [.failed])
        ),
        (.destroying(.deleteVolume), .stepSucceeded, Effects(wipeOneTimePassword: true, revokeHostToken: true)),
        (.destroying(.terminate), .stepFailed(reason: "r"), Effects(wipeOneTimePassword: true)),
        (
            .ready, .retry(from: .provision),
            Effects(
                runStep: .provision, startNextGeneration: true, preregisterAgain: true, verifyAgain: true,
                staleReports: [.failed, .booted, .volumeMounted, .configured])
        ),
        (
            .failed(.complete, reason: "r"), .retry(from: .preregister),
            Effects(
                runStep: .preregister, preregisterAgain: true, requestVolumeAgain: true, verifyAgain: true,
                staleReports: [.failed, .booted, .volumeMounted, .configured])
        ),
        (
            .failed(.attachVolume, reason: "r"), .retry(from: .attachVolume),
            Effects(
                runStep: .attachVolume, requestVolumeAgain: true, verifyAgain: true, staleReports: [.failed, .volumeMounted, .configured])
        ),
        (
            .failed(.configPull, reason: "r"), .retry(from: .configPull),
            Effects(runStep: .configPull, verifyAgain: true, staleReports: [.failed, .configured])
        ),
    ])
    func eachMoveSaysWhatItCallsFor(state: HostState, input: HostWorkflow.Input, expected: Effects) throws {
        var workflow = HostWorkflow(state: state)
        #expect(try workflow.apply(input) == expected)
    }

    @Test func refusedTransitionSaysWhatAndFromWhere() {
        var workflow = HostWorkflow(state: .ready)
        #expect(throws: HostWorkflow.InvalidTransition.self) { try workflow.apply(.resume) }
        do { _ = try workflow.apply(.resume) } catch {
            #expect(error.description == "cannot resume a host that is ready")
        }
    }

    @Test func waitingIsOnlyForWaitingSteps() {
        var workflow = HostWorkflow(state: .running(.provision))
        #expect(throws: HostWorkflow.InvalidTransition.self) { try workflow.apply(.stepWaiting) }
    }
}
