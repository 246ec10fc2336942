import OneTouchCore
import Synchronization

/// An in-memory Kerberos directory that behaves like MIT's: a pre-registered entry has key version 1,
/// setting its password again bumps it, and a host that enrolls with the one-time password bumps it
/// too and uses the password up. `lookup` judges enrollment as MIT's key version does (above 1).
public final class FakeDirectory: Directory, Sendable {
    public let faults = FaultPlan()
    private struct Entry {
        var password: Secret?
        var keyVersion: Int
    }
    private struct State {
        var entries: [String: Entry] = [:]
        var entriesCreated = 0
        var passwordsIssued = 0
        var calls: [String: Int] = [:]
    }
    private let state = Mutex(State())

    public init() {}

    public var entriesCreated: Int { state.withLock { $0.entriesCreated } }
    public var passwordsIssued: Int { state.withLock { $0.passwordsIssued } }
    public var entryCount: Int { state.withLock { $0.entries.count } }
    public func calls(_ operation: String) -> Int { state.withLock { $0.calls[operation, default: 0] } }
    public func hasEntry(_ fqdn: String) -> Bool { state.withLock { $0.entries[fqdn] != nil } }
    private func count(_ operation: String) { state.withLock { $0.calls[operation, default: 0] += 1 } }

    /// What the host does with its one-time password (MIT `ktadd`): true if the password was right.
    @discardableResult
    public func enroll(fqdn: String, password: Secret) -> Bool {
        state.withLock { s in
            guard var entry = s.entries[fqdn], entry.password == password else { return false }
            entry.password = nil
            entry.keyVersion += 1
            s.entries[fqdn] = entry
            return true
        }
    }

    /// An entry some other machine made and enrolled with, outside onetouch.
    public func plantEnrolledEntry(fqdn: String) {
        state.withLock { $0.entries[fqdn] = Entry(password: nil, keyVersion: 2) }
    }

    public func lookup(_ host: DirectoryHost) async throws -> DirectoryEntry? {
        count("lookup")
        return try faults.perform("lookup") {
            state.withLock { s in
                s.entries[host.fqdn].map { DirectoryEntry(enrolled: $0.keyVersion > 1, keyState: String($0.keyVersion)) }
            }
        }
    }

    public func preregister(_ host: DirectoryHost, proposedPassword: Secret, ownsEntry: Bool) async throws -> Preregistration {
        count("preregister")
        return try faults.perform("preregister") {
            try state.withLock { s in
                if var entry = s.entries[host.fqdn] {
                    if entry.keyVersion > 1 && !ownsEntry {
                        throw StepError.enrolledElsewhere(host.fqdn, detail: "key version \(entry.keyVersion)", hint: "remove it")
                    }
                    // Like MIT's `cpw`: setting the password again bumps the key version.
                    if entry.password != proposedPassword { s.passwordsIssued += 1 }
                    entry.password = proposedPassword
                    entry.keyVersion += 1
                    s.entries[host.fqdn] = entry
                    return Preregistration(oneTimePassword: proposedPassword, baseline: String(entry.keyVersion))
                } else {
                    s.entries[host.fqdn] = Entry(password: proposedPassword, keyVersion: 1)
                    s.entriesCreated += 1
                    s.passwordsIssued += 1
                }
                return Preregistration(oneTimePassword: proposedPassword, baseline: "1")
            }
        }
    }

    public func isEnrolled(_ host: DirectoryHost, baseline: String) async throws -> Bool {
        count("isEnrolled")
        return try faults.perform("isEnrolled") {
            state.withLock { s in (s.entries[host.fqdn]?.keyVersion ?? 0) > (Int(baseline) ?? 0) }
        }
    }

    public func remove(_ host: DirectoryHost) async throws {
        count("remove")
        try faults.perform("remove") { _ = state.withLock { $0.entries.removeValue(forKey: host.fqdn) } }
    }

    public func enrollmentInfo(for host: DirectoryHost) -> EnrollmentInfo {
        EnrollmentInfo(backend: "fake", realm: "FAKE.TEST", server: "kdc.fake.test", principal: "host/\(host.fqdn)")
    }
}
