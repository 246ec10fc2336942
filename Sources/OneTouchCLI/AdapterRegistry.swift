import Foundation
import Logging
import OneTouchCore
import OneTouchEC2
import OneTouchHTTP
import OneTouchKerberos
import OneTouchQEMU

/// Builds the adapters a configuration names. Only real adapters live here: the fakes in
/// OneTouchTesting are never linked into the executable.
public enum AdapterRegistry {
    public static func make(
        configuration: Configuration, environment: [String: String], logger: Logger, telemetry: Telemetry = Telemetry()
    ) throws -> Adapters {
        let cloud = try makeCloud(
            configuration.provider, environment: environment, masterKeyFile: configuration.masterKeyFile, logger: logger,
            telemetry: telemetry)
        let directory = try makeDirectory(configuration.directory, environment: environment, logger: logger)
        let notifier = try makeNotifier(configuration.notifier, logger: logger)
        var adapters = Adapters(cloud: cloud, directory: directory, notifier: notifier)
        adapters.slack = try makeSlack(configuration.notifier, environment: environment)
        return adapters
    }

    static func makeCloud(
        _ section: ConfigSection, environment: [String: String], masterKeyFile: String, logger: Logger, telemetry: Telemetry
    ) throws -> any CloudProvider {
        let kind = try section.requiredString("kind")
        switch kind {
        case "ec2":
            return try makeEC2(section, environment: environment, telemetry: telemetry)
        case "qemu":
            return try makeQEMU(section, masterKeyFile: masterKeyFile, logger: logger)
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
        case "slack":
            // Slack hears from the announcer, which follows the events (makeSlack); the log keeps its line.
            return LogNotifier(logger: logger)
        default:
            throw section.error("kind", "unknown notifier '\(kind)'; this build supports: log, slack")
        }
    }

    static let cloudKinds = ["ec2", "qemu"]

    static func makeQEMU(_ section: ConfigSection, masterKeyFile: String, logger: Logger) throws -> any CloudProvider {
        try section.rejectUnknownKeys([
            "kind", "image", "state_directory", "memory_mib", "cpus", "accelerator", "forwards", "qemu", "qemu_img", "iso_tool",
            "relay", "shutdown_deadline",
        ])
        let image = try section.path("image") ?? ""
        guard !image.isEmpty else {
            throw section.error("image", "is required: the folder scripts/build-image prints (base.qcow2, vmlinuz, initrd.img)")
        }
        for name in ["base.qcow2", "vmlinuz", "initrd.img"]
        where !FileManager.default.fileExists(atPath: URL(fileURLWithPath: image).appendingPathComponent(name).path) {
            throw section.error("image", "\(image) has no \(name); run scripts/build-image and give the folder it prints")
        }
        var forwards: [QEMUSettings.Forward] = []
        for forward in try section.sections("forwards") ?? [] {
            try forward.rejectUnknownKeys(["guest", "host"])
            let guest = try forward.requiredString("guest")
            let host = try forward.requiredString("host")
            guard let (guestAddress, guestPort) = hostAndPort(guest), guestAddress.hasPrefix("10.0.2.") else {
                throw forward.error("guest", "expected an address of the guest network and a port, e.g. 10.0.2.100:8780, got '\(guest)'")
            }
            guard let (hostAddress, hostPort) = hostAndPort(host) else {
                throw forward.error("host", "expected HOST:PORT on this machine, e.g. 127.0.0.1:8780, got '\(host)'")
            }
            forwards.append(.init(guestAddress: guestAddress, guestPort: guestPort, hostAddress: hostAddress, hostPort: hostPort))
        }
        var settings = QEMUSettings(
            imageDirectory: image, stateDirectory: try section.path("state_directory") ?? section.resolve("vms"), forwards: forwards)
        settings.memoryMiB = try section.int("memory_mib", range: 256...65_536) ?? settings.memoryMiB
        settings.cpus = try section.int("cpus", range: 1...64) ?? settings.cpus
        settings.accelerator = try section.string("accelerator") ?? settings.accelerator
        guard ["tcg", "kvm"].contains(settings.accelerator) else {
            throw section.error("accelerator", "expected tcg or kvm (kvm only where a test boot proves it works)")
        }
        settings.qemuSystem = try section.path("qemu") ?? settings.qemuSystem
        settings.qemuImg = try section.path("qemu_img") ?? settings.qemuImg
        settings.isoTool = try section.path("iso_tool") ?? settings.isoTool
        settings.relay = try section.path("relay") ?? settings.relay
        settings.shutdownDeadline = try section.duration("shutdown_deadline") ?? settings.shutdownDeadline
        for (key, program) in [
            ("qemu", settings.qemuSystem), ("qemu_img", settings.qemuImg), ("iso_tool", settings.isoTool), ("relay", settings.relay),
        ]
        where !FileManager.default.isExecutableFile(atPath: program) {
            throw section.error(key, "\(program) is not installed; run scripts/install-vm-deps")
        }
        // Checked, not made: nothing is written before serve has checked its tokens. The provider makes
        // the folder (0700) and reads the master key, which serve has made by then, on first use.
        var existing = URL(fileURLWithPath: settings.stateDirectory)
        while !FileManager.default.fileExists(atPath: existing.path) { existing.deleteLastPathComponent() }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: existing.path, isDirectory: &isFolder), isFolder.boolValue,
            FileManager.default.isWritableFile(atPath: existing.path)
        else {
            throw section.error("state_directory", "cannot create \(settings.stateDirectory): \(existing.path) is not a writable folder")
        }
        return QEMUCloudProvider(
            settings: settings, sealer: { SecretBox(masterKey: try SecretBox.loadOrCreateMasterKey(at: masterKeyFile)) }, logger: logger)
    }

    /// "HOST:PORT" split, or nil.
    static func hostAndPort(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port),
            colon > text.startIndex
        else { return nil }
        return (String(text[..<colon]), port)
    }
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
        var settings = FreeIPADirectory.Settings(
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
            // The hosts get the same CA for ipa-client-install --ca-cert-file.
            settings.caCertificate = try? String(contentsOfFile: bundle, encoding: .utf8)
        } else {
            transport = AsyncHTTPClientTransport()
        }
        return FreeIPADirectory(settings: settings, transport: transport)
    }

    static func makeEC2(_ section: ConfigSection, environment: [String: String], telemetry: Telemetry) throws -> any CloudProvider {
        try section.rejectUnknownKeys([
            "kind", "region", "endpoint", "image_id", "subnet_id", "security_group_ids", "instance_profile", "kms_key_id",
            "availability_zone", "metadata_hop_limit", "rate_limits", "root_volume_encrypted",
        ])
        let region = try section.string("region")
        let settings: EC2Settings
        do {
            settings = try EC2Settings.resolve(
                configuredRegion: region, configuredEndpoint: try section.string("endpoint"), environment: environment)
        } catch let error as EC2SettingsError {
            // Each under its own key: an endpoint from AWS_ENDPOINT_URL* is named by the message.
            if case .invalidEndpoint = error { throw section.error("endpoint", error.description) }
            throw section.error("region", error.description)
        } catch {
            throw section.error(nil, "cannot read the AWS shared configuration: \(error)")
        }
        var launch = EC2LaunchSettings(
            imageID: try section.requiredString("image_id"), subnetID: try section.string("subnet_id"),
            securityGroupIDs: try section.strings("security_group_ids") ?? [],
            instanceProfile: try section.string("instance_profile").map { $0.hasPrefix("arn:") ? .arn($0) : .name($0) },
            kmsKeyID: try section.string("kms_key_id"), availabilityZone: try section.string("availability_zone"))
        launch.metadataHopLimit = try section.int("metadata_hop_limit", range: 1...64) ?? 1
        launch.rootVolumeEncrypted = try section.bool("root_volume_encrypted")
        let transport = AsyncHTTPClientTransport()
        let limiter =
            (try section.bool("rate_limits") ?? true)
            ? EC2RateLimiter(waited: { telemetry.rateLimiterWaited(category: $0.rawValue, seconds: $1) }) : nil
        let client = EC2Client(
            credentials: AWSCredentialsChain.standard(environment: environment, transport: transport, region: settings.region),
            settings: settings,
            transport: transport, rateLimiter: limiter)
        return EC2CloudProvider(client: client, settings: launch)
    }

    static func makeMIT(_ section: ConfigSection) throws -> any Directory {
        try section.rejectUnknownKeys([
            "kind", "realm", "admin_server", "kdc", "host_admin_server", "principal", "keytab", "kadmin", "krb5_config",
        ])
        var settings = MITDirectory.Settings(
            realm: try section.requiredString("realm"), adminServer: try section.requiredString("admin_server"),
            kdc: try section.requiredString("kdc"), principal: try section.requiredString("principal"),
            keytab: section.resolve(try section.requiredString("keytab")))
        settings.kadmin = try section.path("kadmin") ?? settings.kadmin
        settings.hostAdminServer = try section.string("host_admin_server")
        settings.krb5Config = try section.path("krb5_config")
        guard FileManager.default.isReadableFile(atPath: settings.keytab) else {
            throw section.error("keytab", "cannot read \(settings.keytab); give the provisioner's keytab (mode 0600)")
        }
        return MITDirectory(settings: settings)
    }
}
