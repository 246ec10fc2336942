import Foundation
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

    @Test func jsonLogLinesParseAndCarryTheHostAsFieldsWithNothingATerminalWouldActOn() throws {
        let lines = Lines()
        var logger = Logger(label: "onetouch") { label in
            VisibleTextLogHandler(JSONLineLogHandler(label: label) { line in lines.all.append(line) })
        }
        logger[metadataKey: "engine.owner"] = "box pid 7"
        logger.notice(
            "Host failed",
            metadata: ["host.id": "h-0001", "host.name": "web-01", "step": "config-pull", "reason": "exit 2: \u{1B}[2J\u{9B}6n"])
        #expect(lines.all.count == 1 && lines.all[0].hasSuffix("\n") && lines.all[0].dropLast().allSatisfy { $0 != "\n" })
        let object = try #require(try JSONSerialization.jsonObject(with: Data(lines.all[0].utf8)) as? [String: Any])
        #expect(object["host.id"] as? String == "h-0001")
        #expect(object["host.name"] as? String == "web-01")
        #expect(object["step"] as? String == "config-pull")
        #expect(object["engine.owner"] as? String == "box pid 7")
        #expect(object["level"] as? String == "notice")
        #expect(object["message"] as? String == "Host failed")
        #expect((object["time"] as? String).flatMap { try? APIDates.decoder().decode(Date.self, from: Data("\"\($0)\"".utf8)) } != nil)
        #expect(object["reason"] as? String == #"exit 2: \e[2J\u{009b}6n"#)
        #expect(!lines.all[0].contains("\u{1B}") && !lines.all[0].contains("\u{9B}"))
    }
}
