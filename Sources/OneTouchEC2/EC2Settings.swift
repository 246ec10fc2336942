import Foundation

/// Region and endpoint of the EC2 API, resolved the way the AWS CLI does, except that an
/// explicit value from the orchestrator's own configuration always wins.
///
/// * Region: `configuredRegion`, then `AWS_REGION`, `AWS_DEFAULT_REGION`, then `region` of the
///   selected profile in `~/.aws/config`.
/// * Endpoint: `configuredEndpoint`, then `AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL`, then the
///   profile's `services` → `ec2` → `endpoint_url` or `endpoint_url`, then
///   `https://ec2.<region>.amazonaws.com/`. `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` skips the
///   environment and shared-config endpoints.
public struct EC2Settings: Sendable, Equatable {
    public var region: String
    public var endpoint: URL

    public init(region: String, endpoint: URL) {
        self.region = region
        self.endpoint = endpoint
    }

    public static func resolve(
        configuredRegion: String? = nil, configuredEndpoint: String? = nil, environment: [String: String]
    ) throws -> EC2Settings {
        let shared = try AWSSharedConfig(environment: environment)
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }

        let regionCandidates = [configuredRegion, value("AWS_REGION"), value("AWS_DEFAULT_REGION"), shared.region]
        guard let region = regionCandidates.compactMap({ $0 }).first(where: { !$0.isEmpty }) else {
            throw EC2SettingsError.noRegion
        }
        guard isValidRegion(region) else { throw EC2SettingsError.invalidRegion(region) }

        let ignoreConfigured = environment["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"]?.lowercased() == "true"
        var endpointCandidates: [String?] = [configuredEndpoint]
        if !ignoreConfigured {
            endpointCandidates += [value("AWS_ENDPOINT_URL_EC2"), value("AWS_ENDPOINT_URL"), shared.ec2EndpointURL]
        }
        let endpointText =
            endpointCandidates.compactMap({ $0 }).first(where: { !$0.isEmpty })
            ?? "https://ec2.\(region).amazonaws.com/"
        return EC2Settings(region: region, endpoint: try parseEndpoint(endpointText))
    }

    /// Lower-case letters, digits and dashes only (it becomes part of a host name).
    static func isValidRegion(_ region: String) -> Bool {
        !region.isEmpty
            && region.utf8.allSatisfy { byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                    || byte == UInt8(ascii: "-")
            }
    }

    static func parseEndpoint(_ text: String) throws -> URL {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
            let host = url.host(), !host.isEmpty
        else {
            throw EC2SettingsError.invalidEndpoint(text)
        }
        return url
    }
}

public enum EC2SettingsError: Error, Sendable, Equatable, CustomStringConvertible {
    case noRegion
    case invalidRegion(String)
    case invalidEndpoint(String)

    public var description: String {
        switch self {
        case .noRegion:
            "no AWS region configured (set it in the onetouch configuration, AWS_REGION, AWS_DEFAULT_REGION or ~/.aws/config)"
        case .invalidRegion(let region): "invalid AWS region '\(region)'"
        case .invalidEndpoint(let text): "invalid EC2 endpoint URL '\(text)' (expected http:// or https:// with a host)"
        }
    }
}
