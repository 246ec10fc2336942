import Foundation
import Logging
import OneTouchCore

/// Builds the adapters a configuration names. Only real adapters live here: the fakes in
/// OneTouchTesting are never linked into the executable.
public enum AdapterRegistry {
    public static func make(configuration: Configuration, environment: [String: String], logger: Logger) throws -> Adapters {
        let cloud = try makeCloud(configuration.provider, environment: environment, logger: logger)
        let directory = try makeDirectory(configuration.directory, environment: environment, logger: logger)
        let notifier = try makeNotifier(configuration.notifier, logger: logger)
        return Adapters(cloud: cloud, directory: directory, notifier: notifier)
    }

    static func makeCloud(_ section: ConfigSection, environment: [String: String], logger: Logger) throws -> any CloudProvider {
        let kind = try section.requiredString("kind")
        switch kind {
        default:
            throw section.error("kind", "unknown provider '\(kind)'; this build supports: \(cloudKinds.joined(separator: ", "))")
        }
    }

    static func makeDirectory(_ section: ConfigSection, environment: [String: String], logger: Logger) throws -> any Directory {
        let kind = try section.requiredString("kind")
        switch kind {
        default:
            throw section.error("kind", "unknown directory '\(kind)'; this build supports: \(directoryKinds.joined(separator: ", "))")
        }
    }

    static func makeNotifier(_ section: ConfigSection, logger: Logger) throws -> any Notifier {
        let kind = try section.requiredString("kind")
        switch kind {
        case "log":
            try section.rejectUnknownKeys(["kind"])
            return LogNotifier(logger: logger)
        default:
            throw section.error("kind", "unknown notifier '\(kind)'; this build supports: log")
        }
    }

    static let cloudKinds: [String] = []
    static let directoryKinds: [String] = []
}
