import Foundation
import Logging
import OneTouchCore
import OneTouchEC2
import OneTouchHTTP
import OneTouchKerberos

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
        case "ec2":
            return try makeEC2(section, environment: environment)
        default:
            throw section.error("kind", "unknown provider '\(kind)'; this build supports: \(cloudKinds.joined(separator: ", "))")
        }
    }

    static func makeDirectory(_ section: ConfigSection, environment: [String: String], logger: Logger) throws -> any Directory {
        let kind = try section.requiredString("kind")
        switch kind {
        case "mit":
            return try makeMIT(section)
        case "freeipa":
            return try makeFreeIPA(section, environment: environment)
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

    static let cloudKinds = ["ec2"]
    static let directoryKinds = ["mit", "freeipa"]

    static func makeFreeIPA(_ section: ConfigSection, environment: [String: String]) throws -> any Directory {
        try section.rejectUnknownKeys(["kind", "server", "port", "realm", "domain", "user", "password", "ca_bundle", "ip_address_in_dns"])
        guard let passwordSource = try section.secretSource("password") else {
            throw section.error("password", "is required: `password: {file: /etc/onetouch/ipa-password}` or `{env: NAME}`")
        }
        let password: Secret
        do { password = try passwordSource.load(environment: environment) } catch let error as ConfigurationError {
            throw section.error("password", error.reason)
        }
        let settings = FreeIPADirectory.Settings(
            server: try section.requiredString("server"), port: try section.int("port", range: 1...65535) ?? 443,
            realm: try section.requiredString("realm"), domain: try section.requiredString("domain"),
            user: try section.requiredString("user"), password: password,
            ipAddressInDNS: try section.bool("ip_address_in_dns") ?? false)
        let transport: any HTTPTransport
        if let bundle = try section.string("ca_bundle") {
            guard FileManager.default.isReadableFile(atPath: bundle) else {
                throw section.error("ca_bundle", "cannot read \(bundle); give the IPA CA certificate (PEM), e.g. /etc/ipa/ca.crt")
            }
            do { transport = try AsyncHTTPClientTransport(caBundle: bundle) } catch {
                throw section.error("ca_bundle", "not a usable PEM CA bundle: \(error)")
            }
        } else {
            transport = AsyncHTTPClientTransport()
        }
        return FreeIPADirectory(settings: settings, transport: transport)
    }

    static func makeEC2(_ section: ConfigSection, environment: [String: String]) throws -> any CloudProvider {
        try section.rejectUnknownKeys([
            "kind", "region", "endpoint", "image_id", "subnet_id", "security_group_ids", "instance_profile", "kms_key_id",
            "availability_zone", "metadata_hop_limit", "rate_limits",
        ])
        let region = try section.string("region")
        let settings: EC2Settings
        do {
            settings = try EC2Settings.resolve(
                configuredRegion: region, configuredEndpoint: try section.string("endpoint"), environment: environment)
        } catch {
            throw section.error("region", "\(error)")
        }
        var launch = EC2LaunchSettings(
            imageID: try section.requiredString("image_id"), subnetID: try section.string("subnet_id"),
            securityGroupIDs: try section.strings("security_group_ids") ?? [],
            instanceProfile: try section.string("instance_profile").map { $0.hasPrefix("arn:") ? .arn($0) : .name($0) },
            kmsKeyID: try section.string("kms_key_id"), availabilityZone: try section.string("availability_zone"))
        launch.metadataHopLimit = try section.int("metadata_hop_limit", range: 1...64) ?? 1
        let transport = AsyncHTTPClientTransport()
        let limiter = (try section.bool("rate_limits") ?? true) ? EC2RateLimiter() : nil
        let client = EC2Client(
            credentials: AWSCredentialsChain.standard(environment: environment, transport: transport), settings: settings,
            transport: transport, rateLimiter: limiter)
        return EC2CloudProvider(client: client, settings: launch)
    }

    static func makeMIT(_ section: ConfigSection) throws -> any Directory {
        try section.rejectUnknownKeys(["kind", "realm", "admin_server", "kdc", "principal", "keytab", "kadmin", "krb5_config"])
        var settings = MITDirectory.Settings(
            realm: try section.requiredString("realm"), adminServer: try section.requiredString("admin_server"),
            kdc: try section.requiredString("kdc"), principal: try section.requiredString("principal"),
            keytab: try section.requiredString("keytab"))
        settings.kadmin = try section.string("kadmin") ?? settings.kadmin
        settings.krb5Config = try section.string("krb5_config")
        guard FileManager.default.isReadableFile(atPath: settings.keytab) else {
            throw section.error("keytab", "cannot read \(settings.keytab); give the provisioner's keytab (mode 0600)")
        }
        return MITDirectory(settings: settings)
    }
}
