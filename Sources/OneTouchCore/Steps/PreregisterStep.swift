import Foundation

/// Creates the Kerberos host entry with a one-time password (OTP), stored sealed before the directory
/// call so a crash re-issues the same password. An OTP that was already delivered is never rotated
/// under the host.
struct PreregisterStep: HostStep {
    let step = Step.preregister

    func run(_ context: StepContext) async throws -> StepOutcome {
        var facts = context.facts
        let services = context.services
        let host = context.directoryHost
        let existing = try services.store.secret(hostID: context.hostID, kind: .oneTimePassword)

        if let existing, existing.deliveredAt != nil, facts.directoryBaseline != nil {
            // The host holds the password and may be enrolling right now: leave it alone.
            return .done(facts)
        }
        if facts.replaceDirectoryEntry == true {
            // Re-provisioning: the old entry (enrolled by this host's previous machine) is replaced.
            try await services.directory.remove(host)
            facts.replaceDirectoryEntry = nil
        }
        // A password we stored and never delivered means an existing entry is ours, mid-preregistration
        // (re-setting a password moves MIT's key version, which would otherwise look like enrollment).
        let ours = existing.map { $0.deliveredAt == nil && $0.wipedAt == nil && $0.sealed != nil } ?? false
        let proposed: Secret
        if let existing, existing.deliveredAt == nil, existing.wipedAt == nil, let sealed = existing.sealed {
            proposed = try services.secrets.open(sealed, hostID: context.hostID, kind: SecretRecord.Kind.oneTimePassword.rawValue)
        } else {
            proposed = services.oneTimePasswords()
            try await store(proposed, context)
        }
        // The directory refuses an entry some other machine enrolled with (a name taken outside onetouch).
        let result = try await services.directory.preregister(host, proposedPassword: proposed, ownsEntry: ours)
        if result.oneTimePassword != proposed { try await store(result.oneTimePassword, context) }
        facts.directoryBaseline = result.baseline
        services.logger.info(
            "Pre-registered host in the directory", metadata: ["host.id": "\(context.hostID)", "fqdn": "\(context.spec.fqdn)"])
        return .done(facts)
    }

    private func store(_ password: Secret, _ context: StepContext) async throws {
        let kind = SecretRecord.Kind.oneTimePassword
        let sealed = try context.services.secrets.seal(password, hostID: context.hostID, kind: kind.rawValue)
        try await context.services.store.putSecret(hostID: context.hostID, kind: kind, sealed: sealed, now: context.now)
    }
}
