import Foundation
import OneTouchCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Everything the CLI prints goes through here, for two reasons.
///
/// - Each line is written to the file descriptor at once, not kept in stdio's buffer, which holds
///   everything until exit when stdout is a pipe: `create --wait | tee log` shows each step as it
///   happens, and a Ctrl-C loses no line (the first one names the new host's id).
/// - Text from the server carries what hosts said (log tails, reasons that quote them): it is shown with
///   its control characters made visible (`TerminalText`), so a VM cannot send escape sequences to an
///   operator's terminal. JSON stays JSON (`TerminalText.jsonSafe`).
enum Output {
    /// One line on stdout; a line break inside `text` is shown as `\n`, so it cannot forge a line.
    static func line(_ text: String) {
        emit(TerminalText.visible(text) + "\n", to: STDOUT_FILENO)
    }

    /// Lines that are meant to be several (a host's log tail): newlines and tabs are kept, every other
    /// control character made visible.
    static func block(_ text: String) {
        emit(TerminalText.visible(text, keepingLineBreaks: true) + "\n", to: STDOUT_FILENO)
    }

    /// A message on stderr (errors, what to do after a Ctrl-C).
    static func error(_ text: String) {
        emit(TerminalText.visible(text, keepingLineBreaks: true) + "\n", to: STDERR_FILENO)
    }

    /// A JSON document (from the server, or encoded here) on one line of its own.
    static func json(_ data: Data) {
        var bytes = TerminalText.jsonSafe(data)
        bytes.append(UInt8(ascii: "\n"))
        emit(bytes, to: STDOUT_FILENO)
    }

    /// Raw bytes the user asked for as they are (`render` prints the user-data the server renders).
    static func raw(_ data: Data) {
        emit(data, to: STDOUT_FILENO)
    }

    private static func emit(_ text: String, to descriptor: Int32) {
        emit(Data(text.utf8), to: descriptor)
    }

    /// write(2) until every byte is out. A reader that went away (EPIPE) ends the process with SIGPIPE,
    /// as for any command-line tool; other errors drop the rest of the line.
    private static func emit(_ data: Data, to descriptor: Int32) {
        data.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) in
            guard var pointer = buffer.baseAddress else { return }
            var left = buffer.count
            while left > 0 {
                let written = Foundation.write(descriptor, pointer, left)
                if written < 0 {
                    if errno == EINTR { continue }
                    return
                }
                pointer += written
                left -= written
            }
        }
    }

}
