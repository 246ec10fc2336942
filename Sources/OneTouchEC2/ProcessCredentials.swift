import Foundation
import OneTouchCore
import OneTouchProcess

/// `credential_process` of the selected profile, as the AWS CLI runs it: the command line is split
/// into words the way a POSIX shell would (quotes and backslashes, no expansion), the program runs
/// without a shell, and its standard output is a JSON document:
///
///     {"Version": 1, "AccessKeyId": "…", "SecretAccessKey": "…", "SessionToken": "…", "Expiration": "2026-11-27T17:00:48Z"}
///
/// (`SessionToken` and `Expiration` optional). The program runs with a deadline (`timeout`) and is
/// stopped (SIGTERM, then SIGKILL) when it passes it or the caller is cancelled (OneTouchProcess). What it prints is
/// never part of an error message: its standard output holds the secret; its standard error's tail is.
/// Put it behind ``AWSCredentialsChain``, which runs it again when its credentials expire or AWS
/// refuses them.
public struct ProcessCredentialsProvider: AWSCredentialsProvider {
    static let source = "credential_process"
    let environment: [String: String]
    let timeout: Duration

    public init(environment: [String: String], timeout: Duration = .seconds(60)) {
        self.environment = environment
        self.timeout = timeout
    }

    public func credentials() async throws -> AWSCredentials {
        let config = try AWSSharedConfig(environment: environment)
        let source = "\(Self.source) of profile \(config.profileName)"
        guard let command = config.profile?["credential_process"], !command.isEmpty else {
            throw AWSCredentialsError.notConfigured(source: source, reason: "profile '\(config.profileName)' has no credential_process")
        }
        let words: [String]
        do { words = try ShellWords.split(command) } catch {
            throw AWSCredentialsError.invalid(source: source, reason: "cannot read the command line: \(error)")
        }
        guard let program = words.first else {
            throw AWSCredentialsError.invalid(source: source, reason: "the command line is empty")
        }
        let output = try await Self.run(program: program, arguments: Array(words.dropFirst()), timeout: timeout, source: source)
        return try Self.decode(output, source: source)
    }

    /// The program's standard output; throws `invalid` on a failure to start, a non-zero exit or the
    /// deadline.
    static func run(program: String, arguments: [String], timeout: Duration, source: String) async throws -> String {
        guard let path = resolve(program) else {
            throw AWSCredentialsError.invalid(source: source, reason: "\(program) is not found (PATH)")
        }
        let outcome: Command.Outcome
        do {
            outcome = try await Command(path: path).execute(arguments, timeout: timeout)
        } catch let failed as Command.Failed {
            throw AWSCredentialsError.invalid(source: source, reason: "\(program) \(failed.status)")
        }
        guard outcome.succeeded else {
            let tail = outcome.errorOutput.trimmingCharacters(in: .whitespacesAndNewlines).suffix(300)
            let status = outcome.status.map { "exited with status \($0)" } ?? "was ended by a signal"
            throw AWSCredentialsError.invalid(source: source, reason: "\(program) \(status)" + (tail.isEmpty ? "" : ": \(tail)"))
        }
        return outcome.output
    }

    /// A program named without a slash is looked up in `PATH`, as a shell would.
    static func resolve(_ program: String) -> String? {
        if program.contains("/") { return program }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(program)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    private struct Document: Decodable {
        var version: Int?
        var accessKeyId: String?
        var secretAccessKey: String?
        var sessionToken: String?
        var expiration: String?

        enum CodingKeys: String, CodingKey {
            case version = "Version", accessKeyId = "AccessKeyId", secretAccessKey = "SecretAccessKey"
            case sessionToken = "SessionToken", expiration = "Expiration"
        }
    }

    static func decode(_ output: String, source: String) throws -> AWSCredentials {
        guard let document = try? JSONDecoder().decode(Document.self, from: Data(output.utf8)) else {
            throw AWSCredentialsError.invalid(source: source, reason: "its output is not the credentials JSON document")
        }
        guard document.version == 1 else {
            throw AWSCredentialsError.invalid(
                source: source, reason: "its output has Version \(document.version.map(String.init) ?? "missing"); only 1 is known")
        }
        guard let keyId = document.accessKeyId, !keyId.isEmpty, let secret = document.secretAccessKey, !secret.isEmpty else {
            throw AWSCredentialsError.invalid(source: source, reason: "its output lacks AccessKeyId or SecretAccessKey")
        }
        var expiration: Date?
        if let text = document.expiration {
            guard let date = ISO8601.parse(text) else {
                throw AWSCredentialsError.invalid(source: source, reason: "its Expiration '\(text)' is not an ISO 8601 time")
            }
            expiration = date
        }
        return AWSCredentials(
            accessKeyId: keyId, secretAccessKey: secret, sessionToken: document.sessionToken.flatMap { $0.isEmpty ? nil : $0 },
            expiration: expiration, source: source)
    }
}

/// Splits a command line into words as a POSIX shell does, without expanding anything: blanks
/// separate words; `'…'` keeps everything; `"…"` keeps everything but `\"`, `\\`, `\$` and `` \` ``;
/// outside quotes a backslash keeps the next character.
enum ShellWords {
    struct Unbalanced: Error, CustomStringConvertible {
        var description: String { "an unbalanced quote or a trailing backslash" }
    }

    static func split(_ line: String) throws -> [String] {
        var words: [String] = []
        var word = ""
        var inWord = false
        var characters = line.makeIterator()
        while let c = characters.next() {
            switch c {
            case " ", "\t", "\n":
                if inWord { words.append(word) }
                word = ""
                inWord = false
            case "'":
                inWord = true
                while true {
                    guard let next = characters.next() else { throw Unbalanced() }
                    if next == "'" { break }
                    word.append(next)
                }
            case "\"":
                inWord = true
                while true {
                    guard let next = characters.next() else { throw Unbalanced() }
                    if next == "\"" { break }
                    if next == "\\" {
                        guard let escaped = characters.next() else { throw Unbalanced() }
                        if !"\"\\$`".contains(escaped) { word.append("\\") }
                        word.append(escaped)
                    } else {
                        word.append(next)
                    }
                }
            case "\\":
                guard let escaped = characters.next() else { throw Unbalanced() }
                inWord = true
                word.append(escaped)
            default:
                inWord = true
                word.append(c)
            }
        }
        if inWord { words.append(word) }
        return words
    }
}
