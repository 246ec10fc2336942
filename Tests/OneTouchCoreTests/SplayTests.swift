import Testing

@testable import OneTouchCore

/// The pull timer's splay (`OnActiveSec=`): SHA-256 of the host id's UTF-8, first 8 bytes big-endian, mod
/// the period. 150 hosts must spread over the whole period, which an offset taken from the last octet of
/// an IP address does not (150 consecutive octets cover 149 s of 600, or 349 s when scaled by 600/256).
/// The numbers below were computed beforehand in Python with the same algorithm and the same ids.
@Suite("Pull splay")
struct SplayTests {
    static let period = 600

    /// `count` host ids in the format `RandomIDGenerator` makes ("h-" and 12 of its 32 letters), drawn
    /// from a SplitMix64 stream with a fixed seed, so the test is the same on every run.
    static func hostIDs(count: Int, seed: UInt64) -> [String] {
        var state = seed
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz")
        var ids: [String] = []
        for _ in 0..<count {
            var id = "h-"
            for _ in 0..<12 { id.append(alphabet[Int(next() % 32)]) }
            ids.append(id)
        }
        return ids
    }

    static let offsets = hostIDs(count: 150, seed: 2026).map { UserDataRenderer.splay(hostID: $0, period: period) }

    @Test func theIDsAndOffsetsAreTheOnesCheckedInPython() {
        let ids = Self.hostIDs(count: 150, seed: 2026)
        #expect(ids.first == "h-3xej93edm2d0")
        #expect(ids.last == "h-h7006ht16hxs")
        #expect(UserDataRenderer.splay(hostID: "h-3xej93edm2d0", period: Self.period) == 270)
        #expect(UserDataRenderer.splay(hostID: "h-h7006ht16hxs", period: Self.period) == 557)
        #expect(UserDataRenderer.splay(hostID: "h-1", period: 1800) == 385)
    }

    @Test func theSplayIsStableAndWithinThePeriod() {
        for id in Self.hostIDs(count: 150, seed: 2026) {
            let offset = UserDataRenderer.splay(hostID: id, period: Self.period)
            #expect(offset == UserDataRenderer.splay(hostID: id, period: Self.period))
            #expect((0..<Self.period).contains(offset))
        }
        #expect(UserDataRenderer.splay(hostID: "h-1", period: 0) == 0)
    }

    /// Python, same ids: spread 597 s, 54 of 60 ten-second buckets used, 11 to 18 hosts per minute,
    /// 135 distinct offsets. The bounds leave room for any uniform hash; the last-octet schemes fail all.
    @Test func hostsSpreadOverAtLeastNinetyPercentOfThePeriod() throws {
        let offsets = Self.offsets
        let latest = try #require(offsets.max())
        let earliest = try #require(offsets.min())
        let spread = latest - earliest
        #expect(spread >= 540, "150 hosts cover only \(spread) s of \(Self.period)")
        var tenSeconds = [Int](repeating: 0, count: Self.period / 10)
        var minutes = [Int](repeating: 0, count: Self.period / 60)
        for offset in offsets {
            tenSeconds[offset / 10] += 1
            minutes[offset / 60] += 1
        }
        let used = tenSeconds.filter { $0 > 0 }.count
        #expect(used >= 48, "only \(used) of 60 ten-second buckets hold a host: \(tenSeconds)")
        #expect(minutes.allSatisfy { (5...30).contains($0) }, "hosts per minute (15 expected): \(minutes)")
        #expect(Set(offsets).count >= 120)
    }
}
