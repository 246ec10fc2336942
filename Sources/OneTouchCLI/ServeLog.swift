import Foundation
import Logging
import OneTouchCore
import Synchronization

/// `serve`'s log: swift-log's stream handler on stderr, with the message and every metadata value shown
/// through `TerminalText.visible`. Reasons in the log quote hosts and clouds; an operator reads the log
/// on a terminal (`journalctl`, `tail -f`), so no escape sequence from a VM may reach it, and no line
/// break may forge a log line.
enum ServeLog {
    enum Format: String, CaseIterable { case text, json }

    static func logger(level: Logger.Level, format: Format = .text) -> Logger {
        var logger = Logger(label: "onetouch") { label in
            switch format {
            case .text: VisibleTextLogHandler(StreamLogHandler.standardError(label: label))
            case .json: VisibleTextLogHandler(JSONLineLogHandler(label: label))
            }
        }
        logger.logLevel = level
        return logger
    }
}

/// Wraps a log handler; what reaches it has its control characters made visible.
struct VisibleTextLogHandler: LogHandler {
    var wrapped: any LogHandler

    init(_ wrapped: any LogHandler) { self.wrapped = wrapped }

    var logLevel: Logger.Level {
        get { wrapped.logLevel }
        set { wrapped.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = newValue.mapValues(Self.visible) }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { wrapped.metadataProvider }
        set { wrapped.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: key] = newValue.map(Self.visible) }
    }

    func log(event: LogEvent) {
        var event = event
        event.message = "\(TerminalText.visible(event.message.description))"
        event.metadata = event.metadata?.mapValues(Self.visible)
        wrapped.log(event: event)
    }

    static func visible(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let text): .string(TerminalText.visible(text))
        case .stringConvertible(let value): .string(TerminalText.visible(value.description))
        case .array(let values): .array(values.map(visible))
        case .dictionary(let values): .dictionary(values.mapValues(visible))
        }
    }
}

/// `log_format: json`: one JSON object a line on stderr, for log shippers: `time` (UTC, milliseconds),
/// `level`, `message`, `source`, and every metadata key (`host.id`, `host.name`, `step`, …) as a field
/// of its own. Wrapped in `VisibleTextLogHandler` like the text log, so a value carries no control
/// character a terminal would act on even where JSON would pass it through.
struct JSONLineLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?
    let label: String
    let write: @Sendable (String) -> Void

    init(label: String, write: @escaping @Sendable (String) -> Void = JSONLineLogHandler.standardError) {
        self.label = label
        self.write = write
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields: [String: Any] = [:]
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let own = event.metadata { all.merge(own) { _, new in new } }
        for (key, value) in all { fields[key] = Self.json(value) }
        fields["time"] = APIDates.format(Date())
        fields["level"] = event.level.rawValue
        fields["message"] = event.message.description
        fields["source"] = event.source
        fields["logger"] = label
        guard let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return
        }
        write(String(decoding: data, as: UTF8.self) + "\n")
    }

    static func json(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let text): text
        case .stringConvertible(let value): value.description
        case .array(let values): values.map(json)
        case .dictionary(let values): values.mapValues(json)
        }
    }

    /// One write per line, so lines from concurrent tasks never interleave.
    static let standardError: @Sendable (String) -> Void = { line in
        lock.withLock { _ in FileHandle.standardError.write(Data(line.utf8)) }
    }
    private static let lock = Mutex(())
}
