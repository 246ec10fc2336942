import Foundation
import OneTouchCore
import OneTouchProcess

/// Plain MIT Kerberos through the `kadmin` client (krb5-user).
///
/// onetouch authenticates with a keytab (never a password in argv), passes one-time passwords on
/// stdin, and uses kadmin's argument form, which exits 1 when the command fails (`-q` exits 0).
/// A host enrolls by rotating its own key with the password (`kadmin -p host/NAME ktadd`), so
/// enrollment shows as a key version above the one recorded at pre-registration.
public struct MITDirectory: Directory {
    public struct Settings: Sendable, Equatable {
        public var realm: String
        /// kadmind, as HOST:PORT.
        public var adminServer: String
        /// The KDC the hosts use, as HOST:PORT (told to hosts at enrollment).
        public var kdc: String
        /// kadmind as the hosts reach it (HOST:PORT), when not the same as `adminServer`.
        public var hostAdminServer: String?
        public var principal: String
        public var keytab: String
        public var kadmin: String = "/usr/bin/kadmin"
        /// How long one kadmin run may take before it is stopped.
        public var timeout: Duration = .seconds(60)
        /// KRB5_CONFIG for the kadmin process, if not the system's.
        public var krb5Config: String?

        public init(realm: String, adminServer: String, kdc: String, principal: String, keytab: String) {
            self.realm = realm
            self.adminServer = adminServer
            self.kdc = kdc
            self.principal = principal
            self.keytab = keytab
        }
    }

    let settings: Settings

    public init(settings: Settings) { self.settings = settings }

    func principal(_ host: DirectoryHost) -> String { "host/\(host.fqdn)@\(settings.realm)" }

    public func lookup(_ host: DirectoryHost) async throws -> DirectoryEntry? {
        guard let kvno = try await keyVersion(host) else { return nil }
        return DirectoryEntry(enrolled: kvno > 1, keyState: String(kvno))
    }

    /// One kadmin run on the usual path (`addprinc`: a new principal has key version 1); an existing
    /// principal is looked at (`getprinc`), refused if a machine enrolled with it and it is not ours,
    /// else given the password again (`cpw`) and looked at once more for its new key version.
    public func preregister(_ host: DirectoryHost, proposedPassword: Secret, ownsEntry: Bool) async throws -> Preregistration {
        let input = proposedPassword.reveal() + "\n" + proposedPassword.reveal() + "\n"
        let added = try await kadmin(["addprinc", principal(host)], stdin: input)
        if added.status == 0 { return Preregistration(oneTimePassword: proposedPassword, baseline: "1") }
        // An earlier attempt whose answer was lost, or someone else's principal. Anything else is an error.
        guard added.stderr.contains("already exists") else { throw failure("addprinc", added) }
        guard let existing = try await keyVersion(host) else {
            throw StepError.transient("\(principal(host)) was reported as existing, then as absent; trying again")
        }
        if existing > 1 && !ownsEntry {
            throw StepError.enrolledElsewhere(
                host.fqdn, detail: "\(principal(host)) has key version \(existing): a machine enrolled with it",
                hint: "if that principal is stale, delete it (`kadmin delprinc \(principal(host))`) and run `onetouch resume {host}`")
        }
        _ = try await kadmin(["cpw", principal(host)], stdin: input).checked("cpw", self)
        guard let kvno = try await keyVersion(host) else {
            throw StepError.transient("\(principal(host)) is not visible right after its password was set")
        }
        return Preregistration(oneTimePassword: proposedPassword, baseline: String(kvno))
    }

    public func isEnrolled(_ host: DirectoryHost, baseline: String) async throws -> Bool {
        guard let kvno = try await keyVersion(host), let base = Int(baseline) else { return false }
        return kvno > base
    }

    public func remove(_ host: DirectoryHost) async throws {
        let result = try await kadmin(["delprinc", "-force", principal(host)], stdin: nil)
        if result.status != 0 && !result.stderr.contains("does not exist") { throw failure("delprinc", result) }
    }

    public func enrollmentInfo(for host: DirectoryHost) -> EnrollmentInfo {
        EnrollmentInfo(
            backend: "mit", realm: settings.realm, server: settings.kdc, principal: principal(host),
            domain: host.fqdn.split(separator: ".", maxSplits: 1).last.map(String.init), kdc: settings.kdc,
            adminServer: settings.hostAdminServer ?? settings.adminServer)
    }

    /// The principal's key version, or nil when it does not exist (`getprinc -terse`, field 9).
    func keyVersion(_ host: DirectoryHost) async throws -> Int? {
        let result = try await kadmin(["getprinc", "-terse", principal(host)], stdin: nil)
        if result.status != 0 {
            if result.stderr.contains("does not exist") { return nil }
            throw failure("getprinc", result)
        }
        return Self.parseTerseKeyVersion(result.stdout)
    }

    /// Parses `getprinc -terse` output: tab-separated, the key version number is the 9th field.
    public static func parseTerseKeyVersion(_ output: String) -> Int? {
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("\"") }) else { return nil }
        let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
        guard fields.count > 8 else { return nil }
        return Int(fields[8].trimmingCharacters(in: .whitespaces))
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        func checked(_ what: String, _ directory: MITDirectory) throws -> Result {
            if status != 0 { throw directory.failure(what, self) }
            return self
        }
    }

    func failure(_ what: String, _ result: Result) -> StepError {
        let detail = result.stderr.split(separator: "\n").last.map(String.init) ?? "exit status \(result.status)"
        if detail.contains("privilege") || detail.contains("Incorrect password") || detail.contains("Client not found") {
            return .needsHuman(
                "kadmin \(what) was refused: \(detail)",
                hint:
                    "check directory.principal, its keytab and the kadm5.acl on \(settings.adminServer), then run `onetouch resume {host}`")
        }
        if detail.contains("Cannot contact") || detail.contains("connect") || detail.contains("timed out") {
            return .transient("kadmin \(what) could not reach \(settings.adminServer): \(detail)")
        }
        return .permanent("kadmin \(what) failed: \(detail)")
    }

    /// Runs kadmin with the keytab; the password, if any, goes on stdin only. A kadmin that hangs is
    /// stopped at `settings.timeout` (transient: the admin server may be slow), and one that exits
    /// before reading its password is an ordinary failure.
    func kadmin(_ command: [String], stdin: String?) async throws -> Result {
        var environment: [String: String] = [:]
        if let config = settings.krb5Config { environment["KRB5_CONFIG"] = config }
        let arguments =
            ["-p", settings.principal, "-k", "-t", settings.keytab, "-r", settings.realm, "-s", settings.adminServer] + command
        do {
            let outcome = try await Command(path: settings.kadmin, environment: environment).execute(
                arguments, input: stdin, timeout: settings.timeout)
            return Result(status: outcome.status ?? -1, stdout: outcome.output, stderr: outcome.errorOutput)
        } catch let failed as Command.Failed where failed.reason == .cannotStart {
            throw StepError.needsHuman("cannot run \(settings.kadmin): \(failed)", hint: "install krb5-user on the orchestrator")
        } catch let failed as Command.Failed where failed.reason == .timedOut {
            throw StepError.transient("kadmin \(command.first ?? "") on \(settings.adminServer): \(failed)")
        }
    }
}
