import Crypto
import Foundation
import Mustache

/// Renders the `#cloud-config` user-data a host boots with, from `templates/` (embedded).
public struct UserDataRenderer: Sendable {
    public var publicURL: String
    public var configRepository: String
    public var configBranch: String
    public var pullPeriod: Duration

    public init(publicURL: String, configRepository: String, configBranch: String, pullPeriod: Duration) {
        self.publicURL = publicURL
        self.configRepository = configRepository
        self.configBranch = configBranch
        self.pullPeriod = pullPeriod
    }

    public struct UnsafeValue: Error, CustomStringConvertible {
        public let field: String
        public var description: String {
            "\(field) contains a quote, backslash or control character, or starts with '-', which the user-data cannot carry safely; change it in the configuration"
        }
    }

    /// The user-data for `host`. `token` is the host's callback token; pass `nil` to render with the
    /// token redacted (what `onetouch render` shows).
    public func render(hostID: String, generation: Int, spec: HostSpec, token: Secret?) throws -> String {
        let period = Int(pullPeriod.seconds)
        let values: [String: String] = [
            "host_id": hostID,
            "generation": String(generation),
            "fqdn": spec.fqdn,
            "short_name": String(spec.fqdn.split(separator: ".").first ?? Substring(spec.fqdn)),
            "public_url": publicURL,
            "token": token?.reveal() ?? "<redacted>",
            "config_repository": configRepository,
            "config_branch": configBranch,
            "playbook": spec.playbook,
            "pull_period_seconds": String(period),
            "pull_splay_seconds": String(Self.splay(hostID: hostID, period: period)),
        ]
        for (field, value) in values
        where value.contains(where: { $0 == "'" || $0 == "\\" || $0.isNewline || $0.asciiValue.map { $0 < 0x20 } == true }) {
            throw UnsafeValue(field: field)
        }
        for field in ["playbook", "config_repository", "config_branch"] where values[field]?.hasPrefix("-") == true {
            throw UnsafeValue(field: field)
        }
        let script = try Self.template("bootstrap.sh.mustache").render(values)
        var context: [String: String] = values
        context["bootstrap_script"] = Self.indent(script, by: "      ")
        return try Self.template("user-data.yaml.mustache").render(context)
    }

    /// `text` with `prefix` before every line that is not empty (a YAML block scalar's indentation).
    /// Byte by byte: splitting a script of several KiB into `Character`s was a tenth of the engine's
    /// CPU for a host.
    static func indent(_ text: String, by prefix: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count * 5 / 4)
        var atLineStart = true
        for byte in text.utf8 {
            if byte == UInt8(ascii: "\n") {
                atLineStart = true
            } else if atLineStart {
                out.append(contentsOf: prefix.utf8)
                atLineStart = false
            }
            out.append(byte)
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The host's stable offset into the pull period: a hash of the host id, so 150 hosts spread evenly
    /// and the offset survives reboots and re-addressing (unlike the last octet of an IP).
    public static func splay(hostID: String, period: Int) -> Int {
        guard period > 0 else { return 0 }
        let digest = Array(SHA256.hash(data: Data(hostID.utf8)))
        let value = digest.prefix(8).reduce(UInt64(0)) { ($0 << 8) | UInt64($1) }
        return Int(value % UInt64(period))
    }

    static func template(_ name: String) throws -> MustacheTemplate {
        guard let template = try parsedTemplates.get()[name] else {
            throw StepError.permanent("template \(name) is missing from this build")
        }
        return template
    }

    /// The embedded templates, parsed once.
    static let parsedTemplates: Result<[String: MustacheTemplate], any Error> = Result {
        try EmbeddedResources.templates.mapValues { try MustacheTemplate(string: "{{% CONTENT_TYPE: TEXT}}" + $0) }
    }
}
