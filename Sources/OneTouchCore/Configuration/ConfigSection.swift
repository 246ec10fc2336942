import Foundation
import Yams

/// An invalid configuration: where (the key path) and why.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var path: String
    public var reason: String
    public init(file: String, path: String, reason: String) {
        self.file = file
        self.path = path
        self.reason = reason
    }
    public var description: String { "\(file): \(path.isEmpty ? "(top level)" : path): \(reason)" }
}

/// Where a secret comes from: a file or an environment variable. Never the value itself.
public enum SecretSource: Sendable, Equatable {
    case file(String)
    case environment(String)

    /// Reads the secret. The error names the source, never the value.
    public func load(environment: [String: String]) throws -> Secret {
        switch self {
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigurationError(file: path, path: "", reason: "cannot read this secret file; check the path and its permissions")
            }
            return Secret(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        case .environment(let name):
            guard let value = environment[name], !value.isEmpty else {
                throw ConfigurationError(file: "environment", path: name, reason: "this environment variable is not set or empty")
            }
            return Secret(value)
        }
    }
}

/// A mapping in the YAML file, read with its key path so every error says where it is.
public struct ConfigSection: @unchecked Sendable {
    let mapping: Node.Mapping
    public let path: String
    public let file: String
    private let allowed: Set<String>?

    init(mapping: Node.Mapping, path: String, file: String) {
        self.mapping = mapping
        self.path = path
        self.file = file
        self.allowed = nil
    }

    public static func parse(yaml: String, file: String) throws -> ConfigSection {
        let node: Node?
        do { node = try Yams.compose(yaml: yaml) } catch {
            throw ConfigurationError(file: file, path: "", reason: "not valid YAML: \(error)")
        }
        guard let mapping = node?.mapping else {
            throw ConfigurationError(file: file, path: "", reason: "expected a mapping of settings")
        }
        return ConfigSection(mapping: mapping, path: "", file: file)
    }

    public func error(_ key: String?, _ reason: String) -> ConfigurationError {
        ConfigurationError(file: file, path: keyPath(key), reason: reason)
    }

    func keyPath(_ key: String?) -> String {
        guard let key else { return path }
        return path.isEmpty ? key : "\(path).\(key)"
    }

    public var keys: [String] { mapping.keys.compactMap(\.string) }

    /// Fails on keys outside `known`, which catches typos.
    public func rejectUnknownKeys(_ known: [String]) throws {
        for key in keys where !known.contains(key) {
            throw error(key, "unknown setting; expected one of: \(known.sorted().joined(separator: ", "))")
        }
    }

    func node(_ key: String) -> Node? { mapping[Node(key)] }

    public func has(_ key: String) -> Bool { node(key) != nil }

    public func string(_ key: String) throws -> String? {
        guard let node = node(key) else { return nil }
        guard let scalar = node.scalar else { throw error(key, "expected a text value") }
        return scalar.string
    }

    public func requiredString(_ key: String) throws -> String {
        guard let value = try string(key), !value.isEmpty else { throw error(key, "is required") }
        return value
    }

    public func int(_ key: String, range: ClosedRange<Int> = 1...Int.max) throws -> Int? {
        guard let text = try string(key) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw error(key, "expected a whole number in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
        }
        return value
    }

    public func bool(_ key: String) throws -> Bool? {
        guard let text = try string(key) else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error(key, "expected true or false, got '\(text)'")
        }
    }

    /// A duration such as `90s`, `15m`, `2h` or `500ms`.
    public func duration(_ key: String) throws -> Duration? {
        guard let text = try string(key) else { return nil }
        guard let value = ConfigSection.parseDuration(text) else {
            throw error(key, "expected a duration such as 30s, 15m or 2h, got '\(text)'")
        }
        return value
    }

    public static func parseDuration(_ text: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            if let value = Double(number), value >= 0, !(suffix == "m" && number.hasSuffix("m")) {
                return .milliseconds(Int64(value * scale * 1000))
            }
        }
        return nil
    }

    public func strings(_ key: String) throws -> [String]? {
        guard let node = node(key) else { return nil }
        guard let sequence = node.sequence else { throw error(key, "expected a list") }
        return try sequence.enumerated().map { index, item in
            guard let s = item.scalar?.string else { throw error("\(key)[\(index)]", "expected a text value") }
            return s
        }
    }

    /// A list of mappings, e.g. `forwards: [{guest: …, host: …}]`.
    public func sections(_ key: String) throws -> [ConfigSection]? {
        guard let node = node(key) else { return nil }
        guard let sequence = node.sequence else { throw error(key, "expected a list") }
        return try sequence.enumerated().map { index, item in
            guard let mapping = item.mapping else { throw error("\(key)[\(index)]", "expected a mapping of settings") }
            return ConfigSection(mapping: mapping, path: keyPath("\(key)[\(index)]"), file: file)
        }
    }

    /// A file or folder path; a relative one is resolved against the configuration file's folder,
    /// not the working directory (a service and a person in another folder read the same file).
    public func path(_ key: String) throws -> String? {
        try string(key).map(resolve)
    }

    /// `path` resolved against the configuration file's folder when it is relative.
    public func resolve(_ path: String) -> String {
        if path.hasPrefix("/") || path.isEmpty { return path }
        let folder = URL(fileURLWithPath: file).deletingLastPathComponent()
        return folder.appendingPathComponent(path).standardizedFileURL.path
    }

    public func section(_ key: String) throws -> ConfigSection? {
        guard let node = node(key) else { return nil }
        guard let mapping = node.mapping else { throw error(key, "expected a mapping of settings") }
        return ConfigSection(mapping: mapping, path: keyPath(key), file: file)
    }

    public func requiredSection(_ key: String) throws -> ConfigSection {
        guard let section = try section(key) else { throw error(key, "is required") }
        return section
    }

    /// A secret given as `{file: PATH}` or `{env: NAME}`; a literal value is refused.
    public func secretSource(_ key: String) throws -> SecretSource? {
        guard let node = node(key) else { return nil }
        guard node.mapping != nil, let section = try section(key) else {
            throw error(key, "secrets are given by reference: `\(key): {file: /path}` or `\(key): {env: NAME}`, never inline")
        }
        try section.rejectUnknownKeys(["file", "env"])
        if let file = try section.string("file") { return .file(resolve(file)) }
        if let env = try section.string("env") { return .environment(env) }
        throw error(key, "give `file:` or `env:`")
    }
}
