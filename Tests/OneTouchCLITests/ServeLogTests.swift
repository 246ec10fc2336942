import Logging
import OneTouchCore
import Testing

@testable import OneTouchCLI

@Suite("serve's log: what hosts said is written with control characters made visible")
struct ServeLogTests {
    final class Lines: @unchecked Sendable {
        var all: [String] = []
    }

    struct Recording: LogHandler {
        let lines: Lines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            lines.all.append("\(event.message) \(merged.sorted { $0.key < $1.key }.map { "\($0)=\($1)" }.joined(separator: " "))")
        }
    }

    @Test func messageAndMetadataReachTheLogAsVisibleText() {
        let lines = Lines()
        var logger = Logger(label: "t") { _ in VisibleTextLogHandler(Recording(lines: lines)) }
        logger[metadataKey: "host.name"] = "web\u{1B}[2J"
        logger.warning(
            "Host failed \u{1B}]0;t\u{07}",
            metadata: [
                "reason": "exit 1: \u{1B}[8mhidden\nforged line", "list": ["\u{9B}"], "map": ["k": "\u{7F}"],
                "value": "\(Step.provision)",
            ])
        // (Arrays and dictionaries describe their strings with Swift's escaping of the backslash.)
        #expect(
            lines.all == [
                #"Host failed \e]0;t\a host.name=web\e[2J list=["\\u{009b}"] map=["k": "\\x7f"] reason=exit 1: \e[8mhidden\nforged line value=provision"#
            ])
    }
}
