import Foundation
import Subprocess
import SystemPackage

/// A helper program (qemu-img, genisoimage, qemu-system) run to completion with a deadline. Its
/// input (a passphrase, say) goes through standard input, never argv.
struct Command: Sendable {
    var path: String

    struct Failed: Error, CustomStringConvertible {
        var program: String
        var status: String
        var output: String
        var description: String {
            "\(program) \(status): \(output.trimmingCharacters(in: .whitespacesAndNewlines).suffix(600))"
        }
    }

    /// Runs the program and returns what it printed (standard output and error together). Throws
    /// `Failed` on a non-zero exit; on timeout or cancellation the program is terminated.
    @discardableResult
    func run(_ arguments: [String], input: String? = nil, timeout: Duration = .seconds(120)) async throws -> String {
        let options = {
            var options = PlatformOptions()
            options.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: .seconds(3))]
            return options
        }()
        let executable = Executable.path(FilePath(path))
        let program = (path as NSString).lastPathComponent
        let result = try await withThrowingTaskGroup(of: ExecutionRecord?.self) { group in
            group.addTask {
                if let input {
                    let record = try await Subprocess.run(
                        executable, arguments: Arguments(arguments), platformOptions: options, input: .string(input),
                        output: .string(limit: 256 * 1024), error: .combinedWithOutput)
                    return ExecutionRecord(status: record.terminationStatus, output: record.standardOutput)
                }
                let record = try await Subprocess.run(
                    executable, arguments: Arguments(arguments), platformOptions: options,
                    output: .string(limit: 256 * 1024), error: .combinedWithOutput)
                return ExecutionRecord(status: record.terminationStatus, output: record.standardOutput)
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
        guard let result else {
            throw Failed(program: program, status: "did not finish within \(timeout) and was stopped", output: "")
        }
        guard result.status.isSuccess else {
            throw Failed(program: program, status: "ended with \(result.status)", output: result.output)
        }
        return result.output
    }

    private struct ExecutionRecord: Sendable {
        var status: TerminationStatus
        var output: String
    }
}
