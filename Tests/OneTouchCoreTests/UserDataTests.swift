import Foundation
import Testing
import Yams

@testable import OneTouchCore

@Suite("User-data rendering")
struct UserDataTests {
    let renderer = UserDataRenderer(
        publicURL: "http://10.0.2.100:8080", configRepository: "https://git.example.com/config.git", configBranch: "main",
        pullPeriod: .seconds(1800))
    let spec = HostSpec(
        name: "web-01", fqdn: "web-01.prod.example.com", role: "web", instanceType: "t3.small", volumeGiB: 20, playbook: "web.yml")

    @Test func userDataCarriesTheTokenButNoOtherSecretAndRedactsOnRequest() throws {
        let token = Secret("tok-abcdef0123456789")
        let rendered = try renderer.render(hostID: "h-1", generation: 1, spec: spec, token: token)
        #expect(rendered.hasPrefix("#cloud-config\n"))
        #expect(rendered.contains("ONETOUCH_TOKEN='tok-abcdef0123456789'"))
        #expect(rendered.contains("ONETOUCH_HOST_ID='h-1'"))
        let redacted = try renderer.render(hostID: "h-1", generation: 1, spec: spec, token: nil)
        #expect(!redacted.contains("tok-abcdef"))
        #expect(redacted.contains("ONETOUCH_TOKEN='<redacted>'"))
    }

    @Test func theBootstrapScriptIsCarriedLineForLineInTheUserData() throws {
        let rendered = try renderer.render(hostID: "h-1", generation: 1, spec: spec, token: Secret("tok-1"))
        let document = try #require(try Yams.load(yaml: rendered) as? [String: Any])
        let files = try #require(document["write_files"] as? [[String: Any]])
        let script = try #require(files.first { $0["path"] as? String == "/usr/local/sbin/onetouch-bootstrap" }?["content"] as? String)
        #expect(script.hasPrefix("#!/bin/bash\n# onetouch bootstrap:"))
        #expect(script.contains("\n\n"), "blank lines survive")
        #expect(script.contains("\nset -euo pipefail\n"), "the block's indentation is not part of the script")
        #expect(script.hasSuffix("\n"))
    }

    @Test func indentPrefixesEveryLineThatIsNotEmpty() {
        #expect(UserDataRenderer.indent("a\n\nb c\n", by: "  ") == "  a\n\n  b c\n")
        #expect(UserDataRenderer.indent("", by: "  ") == "")
        #expect(UserDataRenderer.indent("é\n", by: "> ") == "> é\n")
    }

    @Test func unsafeValuesAreRefused() {
        var bad = spec
        bad.playbook = "web.yml'; rm -rf /"
        #expect(throws: UserDataRenderer.UnsafeValue.self) {
            try renderer.render(hostID: "h-1", generation: 1, spec: bad, token: nil)
        }
    }

    @Test func splayIsStableAndSpreads150HostsOverThePeriod() {
        let period = 1800
        #expect(UserDataRenderer.splay(hostID: "h-1", period: period) == UserDataRenderer.splay(hostID: "h-1", period: period))
        let offsets = (1...150).map { UserDataRenderer.splay(hostID: "h-\($0)", period: period) }
        // 150 hosts in 30 one-minute buckets: a uniform spread puts 5 in each; none should hold more than 15.
        var buckets = [Int](repeating: 0, count: 30)
        for offset in offsets { buckets[offset / 60] += 1 }
        #expect(buckets.max()! <= 15, "\(buckets)")
        #expect(Set(offsets).count > 140)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/cloud-init")))
    func userDataPassesCloudInitSchemaValidation() throws {
        let rendered = try renderer.render(hostID: "h-1", generation: 1, spec: spec, token: Secret("tok-abcdef0123456789"))
        let path = NSTemporaryDirectory() + "user-data-\(UUID().uuidString).yaml"
        try rendered.write(toFile: path, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/cloud-init")
        process.arguments = ["schema", "--config-file", path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        process.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0, "\(text)")
        #expect(text.contains("Valid cloud-config"))
    }

    @Test(arguments: ["", "_", "Web-01", "-web", "web-", "a..b", String(repeating: "a", count: 64), "web;rm", "web 01", "web$(id)", "wéb"])
    func invalidHostNamesAreRefused(name: String) {
        #expect(throws: HostName.Invalid.self) { try HostName.validate(name) }
    }

    @Test(arguments: ["web-01", "a", "db1.prod.example.com", String(repeating: "a", count: 63)])
    func validHostNamesAreAccepted(name: String) throws {
        #expect(try HostName.validate(name) == name)
    }
}
