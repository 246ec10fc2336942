import Foundation

/// Launches the VM with the rendered user-data. Idempotent by the launch key (host id + generation)
/// and, as a second guard, by looking the host's tag up before launching.
struct ProvisionStep: HostStep {
    let step = Step.provision

    func run(_ context: StepContext) async throws -> StepOutcome {
        var facts = context.facts
        let cloud = context.services.cloud
        if facts.instanceID == nil {
            // Look for what an earlier try (or generation) left, unless this is the very first try.
            let tagged =
                context.mayHaveRunBefore || context.host.generation > 1
                ? try await cloud.instances(hostIDs: [context.hostID]).filter { $0.state != .terminated } : []
            let generation = String(context.host.generation)
            // Instances of an earlier generation were superseded by `retry --from provision`.
            for stale in tagged where stale.tags["onetouch:generation"] != generation {
                try await cloud.terminate(instanceID: stale.id)
            }
            if let mine = tagged.first(where: { $0.tags["onetouch:generation"] == generation }) {
                facts.instanceID = mine.id
            } else {
                let token = context.services.secrets.hostToken(hostID: context.hostID, generation: context.host.generation)
                let userData = try context.services.renderer.render(
                    hostID: context.hostID, generation: context.host.generation, spec: context.spec, token: token)
                let instance: Instance
                do {
                    instance = try await cloud.launch(
                        LaunchRequest(
                            hostID: context.hostID, hostName: context.spec.fqdn, role: context.spec.role,
                            instanceType: context.spec.instanceType, userData: Data(userData.utf8),
                            idempotencyKey: context.idempotencyKey, tags: context.tags))
                } catch let spent as LaunchKeySpent {
                    return .nextGeneration(
                        reason:
                            "the instance launched for generation \(context.host.generation) was terminated before the host was ready (\(spent.description)); launching generation \(context.host.generation + 1)"
                    )
                }
                facts.instanceID = instance.id
                context.services.logger.info(
                    "Launched instance",
                    metadata: ["host.id": "\(context.hostID)", "host.name": "\(context.spec.name)", "instance": "\(instance.id)"])
                // The launch answer usually has the address already; the host's own `booted` report
                // proves it runs, so there is no need to poll until EC2 says `running`.
                if let done = try finished(instance, facts: facts, context) { return done }
            }
        }
        guard let instanceID = facts.instanceID else { return .poll(facts, after: .seconds(1)) }
        guard let instance = try await cloud.instances(ids: [instanceID]).first else {
            // Just created: the cloud may not show it yet (eventual consistency).
            if let waited = PollLimit.instancePending.exceeded(context) {
                throw StepError.permanent(
                    "instance \(instanceID) was launched but the cloud still does not show it after \(waited)",
                    hint: "look for it in the EC2 console, then run `onetouch retry \(context.spec.name) --from provision`")
            }
            return .poll(facts, after: .seconds(2))
        }
        if let done = try finished(instance, facts: facts, context) { return done }
        switch instance.state {
        case .pending, .running:
            if let waited = PollLimit.instancePending.exceeded(context) {
                throw StepError.permanent(
                    "instance \(instanceID) is still \(instance.state.rawValue)\(instance.privateIP == nil ? " without an address" : "") after \(waited)",
                    hint:
                        "look at the instance in the EC2 console (capacity, free addresses in its subnet), terminate it, then run `onetouch retry \(context.spec.name) --from provision`"
                )
            }
            return .poll(facts, after: .seconds(2))
        case .stopping, .stopped, .shuttingDown, .terminated:
            throw StepError.permanent(
                "instance \(instanceID) is \(instance.state.rawValue): it was stopped or terminated outside onetouch",
                hint: "run `onetouch retry \(context.spec.name) --from provision` to launch a new one")
        }
    }

    /// Done once the instance is pending or running with an address; IMDSv2 must be required.
    private func finished(_ instance: Instance, facts: HostFacts, _ context: StepContext) throws -> StepOutcome? {
        guard instance.metadataTokensRequired else {
            throw StepError.permanent(
                "instance \(instance.id) was launched without IMDSv2 required (HttpTokens=required)",
                hint: "terminate it, check the provider's launch settings, then run `onetouch retry \(context.spec.name) --from provision`")
        }
        guard instance.state == .pending || instance.state == .running, let address = instance.privateIP else { return nil }
        var facts = facts
        facts.privateIP = address
        facts.zone = instance.zone
        return .done(facts)
    }
}
