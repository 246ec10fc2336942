import Logging
import OneTouchCore

/// `serve`'s log: swift-log's stream handler on stderr, with the message and every metadata value shown
/// through `TerminalText.visible`. Reasons in the log quote hosts and clouds; an operator reads the log
/// on a terminal (`journalctl`, `tail -f`), so no escape sequence from a VM may reach it, and no line
/// break may forge a log line.
enum ServeLog {
    static func logger(level: Logger.Level) -> Logger {
        var logger = Logger(label: "onetouch") { label in VisibleTextLogHandler(StreamLogHandler.standardError(label: label)) }
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
