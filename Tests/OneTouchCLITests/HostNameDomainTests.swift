import OneTouchCore
import Testing

@Suite("Host names: only inside the configured domain")
struct HostNameDomainTests {
    @Test func hostNamesQualifyOnlyInsideTheDomain() throws {
        #expect(try HostName.fqdn("web-01", domain: "onetouch.test") == "web-01.onetouch.test")
        #expect(try HostName.fqdn("web-01.onetouch.test", domain: "onetouch.test") == "web-01.onetouch.test")
        #expect(try HostName.fqdn("a.b.onetouch.test", domain: "onetouch.test.") == "a.b.onetouch.test")
        for outside in ["web-01.evil.com", "onetouch.test", "web-01.xonetouch.test", "web-01.onetouch.test.evil.com"] {
            #expect(throws: HostName.Invalid.self) { try HostName.fqdn(outside, domain: "onetouch.test") }
        }
    }
}
