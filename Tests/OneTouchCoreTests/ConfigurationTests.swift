import Foundation
import OneTouchCore
import Testing

@Suite("Configuration file")
struct ConfigurationTests {
    static let valid = """
        listen: 127.0.0.1:9000
        public_url: http://10.0.2.100:8080
        database: /tmp/onetouch.sqlite
        admin_tokens: {file: /etc/onetouch/admin-tokens}
        domain: prod.example.com
        concurrency: 8
        timeouts: {bootstrap: 20m, config_pull: 1h}
        retry: {base_delay: 500ms, max_delay: 30s, max_attempts: 6, budget: 10m}
        config: {repository: "https://git.example.com/infra/config.git", branch: prod, pull_period: 30m}
        roles:
          web: {instance_type: t3.small, volume_gib: 20, playbook: web.yml}
          db: {instance_type: r6i.large, volume_gib: 200}
        provider: {kind: ec2, region: us-east-1}
        directory: {kind: mit, realm: EXAMPLE.COM}
        """

    @Test func validFileIsRead() throws {
        let config = try Configuration.parse(yaml: Self.valid, file: "onetouch.yaml")
        #expect(config.listenPort == 9000)
        #expect(config.timeouts[.bootstrap] == .seconds(1200))
        #expect(config.timeouts[.configPull] == .seconds(3600))
        #expect(config.retry.baseDelay == .milliseconds(500))
        #expect(config.roles["db"]?.playbook == "db.yml")
        #expect(config.roles["web"]?.volumeGiB == 20)
        #expect(config.adminTokens == .file("/etc/onetouch/admin-tokens"))
        #expect(try config.provider.string("region") == "us-east-1")
    }

    @Test(arguments: [
        ("roles:\n  web: {instance_type: t3.small, volume_gib: ten}", "roles.web.volume_gib", "expected a whole number"),
        ("concurrency: 0", "concurrency", "expected a whole number in 1...10000"),
        ("timeouts: {bootstrap: soon}", "timeouts.bootstrap", "expected a duration"),
        ("admin_tokens: s3cret", "admin_tokens", "never inline"),
        ("public_url: ftp://x", "public_url", "http:// or https://"),
        ("listen: nowhere", "listen", "HOST:PORT"),
        ("listen: 0.0.0.0:8780", "listen", "without TLS sends admin and host tokens in clear"),
        ("host_listen: 10.0.0.5:8781", "host_listen", "give `tls: {certificate: FILE, key: FILE}`"),
        ("tls: {certificate: /etc/onetouch/cert.pem}", "tls", "give both `certificate:` and `key:`"),
        ("provider_typo: {}", "provider_typo", "unknown setting"),
        ("roles:\n  web: {instance_type: t3.small, volume_gb: 10}", "roles.web.volume_gb", "unknown setting"),
    ])
    func invalidSettingIsReportedWithItsKeyPath(override: String, path: String, reason: String) throws {
        // Replace or add the top-level key of `override` in the valid file.
        let key = String(override.prefix { $0 != ":" })
        var lines = Self.valid.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if let start = lines.firstIndex(where: { $0.hasPrefix(key + ":") }) {
            var end = start + 1
            while end < lines.count, lines[end].hasPrefix(" ") { end += 1 }
            lines.removeSubrange(start..<end)
        }
        lines.append(override)
        do {
            _ = try Configuration.parse(yaml: lines.joined(separator: "\n"), file: "onetouch.yaml")
            Issue.record("expected an error at \(path)")
        } catch let error as ConfigurationError {
            #expect(error.path == path)
            #expect(error.reason.contains(reason), "\(error)")
            #expect(error.description.hasPrefix("onetouch.yaml: \(path): "))
        }
    }

    @Test func theHostAPIMayHaveItsOwnAddressAndPlainHTTPBeyondThisMachineNeedsTLSOrAnExplicitYes() throws {
        let split = try Configuration.parse(yaml: Self.valid + "\nhost_listen: 127.0.0.1:9001", file: "onetouch.yaml")
        #expect(split.hostListen?.host == "127.0.0.1" && split.hostListen?.port == 9001)
        let tls = try Configuration.parse(
            yaml: Self.valid.replacingOccurrences(of: "listen: 127.0.0.1:9000", with: "listen: 0.0.0.0:443")
                + "\ntls: {certificate: cert.pem, key: key.pem}", file: "/etc/onetouch/onetouch.yaml")
        #expect(tls.tls?.certificate == "/etc/onetouch/cert.pem", "relative to the configuration file")
        let proxied = try Configuration.parse(
            yaml: Self.valid.replacingOccurrences(of: "listen: 127.0.0.1:9000", with: "listen: 0.0.0.0:8780") + "\nallow_plain_http: true",
            file: "onetouch.yaml")
        #expect(proxied.allowPlainHTTP && proxied.tls == nil)
    }

    @Test func missingRequiredSectionIsNamed() {
        #expect(throws: ConfigurationError(file: "f", path: "roles", reason: "is required")) {
            try Configuration.parse(
                yaml: "public_url: http://x\ndomain: d\nconfig: {repository: r}\nprovider: {kind: a}\ndirectory: {kind: b}", file: "f")
        }
    }
}
