import Foundation

/// The AWS shared files `~/.aws/credentials` and `~/.aws/config`, located the way the AWS CLI
/// locates them (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`, `AWS_PROFILE`), read from an
/// injected environment.
///
/// Profile names: in the credentials file a section is `[name]`; in the config file it is
/// `[profile name]`, except the default profile which may be `[default]`.
/// For the same profile the credentials file wins over the config file, key by key.
public struct AWSSharedConfig: Sendable {
    /// `section -> key -> value`; nested keys (`ec2 =` followed by indented lines) are flattened
    /// as `ec2.endpoint_url`.
    typealias Sections = [String: [String: String]]

    public let profileName: String
    /// True when the profile came from `AWS_PROFILE`/`AWS_DEFAULT_PROFILE` rather than the default.
    public let profileExplicitlyChosen: Bool
    public let credentialsFilePath: String
    public let configFilePath: String
    let credentialsSections: Sections
    let configSections: Sections

    /// Reads both files (missing files are treated as empty). `~` is `HOME` from `environment`;
    /// without `HOME`, only explicitly configured absolute paths can be read.
    public init(environment: [String: String]) throws {
        let home = environment["HOME"] ?? "~"
        func path(_ variable: String, _ fallback: String) -> String {
            let raw = environment[variable].flatMap { $0.isEmpty ? nil : $0 } ?? fallback
            return raw.hasPrefix("~/") ? home + raw.dropFirst(1) : raw
        }
        credentialsFilePath = path("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")
        configFilePath = path("AWS_CONFIG_FILE", "~/.aws/config")
        if let chosen = environment["AWS_PROFILE"] ?? environment["AWS_DEFAULT_PROFILE"], !chosen.isEmpty {
            profileName = chosen
            profileExplicitlyChosen = true
        } else {
            profileName = "default"
            profileExplicitlyChosen = false
        }
        credentialsSections = try Self.parse(fileAt: credentialsFilePath)
        configSections = try Self.parse(fileAt: configFilePath)
    }

    /// The selected profile's settings: config-file values overlaid by credentials-file values.
    /// `nil` if the profile appears in neither file.
    public var profile: [String: String]? {
        let fromConfig = configSection(profileName)
        let fromCredentials = credentialsSections[profileName]
        if fromConfig == nil && fromCredentials == nil { return nil }
        return (fromConfig ?? [:]).merging(fromCredentials ?? [:]) { _, credentialsValue in credentialsValue }
    }

    /// `region` of the selected profile (config file).
    public var region: String? {
        nonEmpty(configSection(profileName)?["region"])
    }

    /// The EC2 endpoint configured for the selected profile: `[services X] ec2 = endpoint_url = …`
    /// (when the profile has `services = X`), else the profile's global `endpoint_url`.
    public var ec2EndpointURL: String? { endpointURL(service: "ec2") }

    /// The endpoint configured for `service` (`ec2`, `sts`) the same way.
    public func endpointURL(service: String) -> String? {
        let section = configSection(profileName)
        if let servicesName = nonEmpty(section?["services"]),
            let url = nonEmpty(configSections["services \(servicesName)"]?["\(service).endpoint_url"])
        {
            return url
        }
        return nonEmpty(section?["endpoint_url"])
    }

    func configSection(_ name: String) -> [String: String]? {
        if let section = configSections["profile \(name)"] { return section }
        return name == "default" ? configSections["default"] : nil
    }

    private func nonEmpty(_ value: String?) -> String? {
        guard let value, !value.isEmpty else { return nil }
        return value
    }

    // MARK: - INI parsing

    static func parse(fileAt path: String) throws -> Sections {
        // An unexpanded `~` means HOME was not provided: there is no file to read.
        guard !path.hasPrefix("~"), FileManager.default.fileExists(atPath: path) else { return [:] }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            return parse(String(decoding: data, as: UTF8.self))
        } catch {
            throw AWSCredentialsError.unreadableFile(path: path, reason: error.localizedDescription)
        }
    }

    /// A forgiving INI reader: `#`/`;` comment lines, `[section]` headers (inner whitespace
    /// collapsed, so `[profile  x]` works), `key = value`, and one level of nesting where a key
    /// with an empty value is followed by indented `sub = value` lines.
    static func parse(_ text: String) -> Sections {
        var sections: Sections = [:]
        var current: String?
        var nestedParent: String?
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                current = line.dropFirst().dropLast().split(whereSeparator: \.isWhitespace).joined(separator: " ")
                nestedParent = nil
                if let current, sections[current] == nil { sections[current] = [:] }
                continue
            }
            guard let section = current, let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            let indented = rawLine.first?.isWhitespace ?? false
            if indented, let parent = nestedParent {
                sections[section]?["\(parent).\(key)"] = value
            } else {
                nestedParent = value.isEmpty ? key : nil
                sections[section]?[key] = value
            }
        }
        return sections
    }
}
