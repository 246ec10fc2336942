import Foundation
import Glibc
import Subprocess
import SystemPackage

/// A helper program (qemu-img, kadmin, a credential process) run to completion with a deadline. Its
/// input (a password, a passphrase) goes through standard input, never argv; on timeout or
/// cancellation the program is stopped (SIGTERM, then SIGKILL), and a program that exits before
/// reading its input cannot take the caller down with it.
public struct Command: Sendable {
    public var path: String
    /// Variables set on top of the caller's environment.
    public var environment: [String: String]

    public init(path: String, environment: [String: String] = [:]) {
        self.path = path
        self.environment = environment
    }

    /// How a run ended.
    public struct Outcome: Sendable {
        /// The exit status; nil when the program was ended by a signal.
        public var status: Int32?
        public var output: String
        public var errorOutput: String
        public var succeeded: Bool { status == 0 }
    }

    /// The program could not be started, did not finish in time, or (for `run`) failed.
    public struct Failed: Error, CustomStringConvertible {
        public enum Reason: Sendable, Equatable { case cannotStart, timedOut, exited }
        public var reason: Reason
        public var program: String
        public var status: String
        public var output: String
        public var description: String {
            "\(program) \(status)" + (output.isEmpty ? "" : ": \(output.trimmingCharacters(in: .whitespacesAndNewlines).suffix(600))")
        }
    }

    private var program: String { (path as NSString).lastPathComponent }

    /// A program that exits before reading its input must make the write fail, not end this process
    /// with SIGPIPE (the default action): broken pipes are ignored process-wide, once.
    private static let brokenPipesIgnored: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    /// Runs the program and returns what it printed (standard output and error together). Throws
    /// `Failed` on a non-zero exit.
    @discardableResult
    public func run(_ arguments: [String], input: String? = nil, timeout: Duration = .seconds(120)) async throws -> String {
        let outcome = try await execute(arguments, input: input, timeout: timeout)
        guard outcome.succeeded else {
            throw Failed(
                reason: .exited, program: program,
                status: outcome.status.map { "exited with status \($0)" } ?? "was ended by a signal",
                output: outcome.output + outcome.errorOutput)
        }
        return outcome.output + outcome.errorOutput
    }

    /// The read end of a pipe that a thread fills with `bytes` and then closes. A write to a reader
    /// that is gone fails (SIGPIPE is ignored) and ends the thread.
    private static func pipe(feeding bytes: [UInt8]) throws -> FileDescriptor {
        var ends: [Int32] = [0, 0]
        guard Glibc.pipe(&ends) == 0 else {
            throw Failed(reason: .cannotStart, program: "pipe", status: "failed: \(String(cString: strerror(errno)))", output: "")
        }
        let writeEnd = ends[1]
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
        Thread {
            bytes.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = write(writeEnd, buffer.baseAddress! + offset, buffer.count - offset)
                    if written < 0 && errno == EINTR { continue }
                    if written <= 0 { break }
                    offset += written
                }
            }
            close(writeEnd)
        }.start()
        return FileDescriptor(rawValue: ends[0])
    }

    /// Runs the program and returns how it ended, whatever its status.
    public func execute(_ arguments: [String], input: String? = nil, timeout: Duration = .seconds(120)) async throws -> Outcome {
        let options = {
            var options = PlatformOptions()
            options.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: .seconds(3))]
            return options
        }()
        Self.brokenPipesIgnored
        let executable = Executable.path(FilePath(path))
        let variables = Dictionary(uniqueKeysWithValues: environment.map { (Environment.Key(stringLiteral: $0.key), Optional($0.value)) })
        let environment = Environment.inherit.updating(variables)
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw Failed(reason: .cannotStart, program: program, status: "is not installed at \(path)", output: "")
        }
        // The input goes through a pipe of our own, written from a thread: swift-subprocess 1.0.2's input
        // writer ends the whole process (a fatal error about an unclosed descriptor) when the program
        // exits before reading its input.
        let stdin = try Self.pipe(feeding: Array((input ?? "").utf8))
        let outcome = try await withThrowingTaskGroup(of: Outcome?.self) { group in
            group.addTask {
                let record = try await Subprocess.run(
                    executable, arguments: Arguments(arguments), environment: environment, platformOptions: options,
                    input: .fileDescriptor(stdin, closeAfterSpawningProcess: true), output: .string(limit: 256 * 1024),
                    error: .string(limit: 256 * 1024))
                var status: Int32?
                if case .exited(let code) = record.terminationStatus { status = code }
                return Outcome(status: status, output: record.standardOutput, errorOutput: record.standardError)
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
        guard let outcome else {
            throw Failed(reason: .timedOut, program: program, status: "did not finish within \(timeout) and was stopped", output: "")
        }
        return outcome
    }
}
