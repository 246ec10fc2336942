import Crypto
import Foundation
import OneTouchCore
import Testing

@Suite("Secrets at rest and host tokens")
struct SecurityTests {
    let box = SecretBox(masterKey: SymmetricKey(size: .bits256))

    @Test func sealedSecretOpensOnlyForItsOwnHostAndKind() throws {
        let sealed = try box.seal(Secret("hunter2-otp"), hostID: "h-1", kind: "one-time-password")
        #expect(!String(decoding: sealed, as: UTF8.self).contains("hunter2"))
        #expect(try box.open(sealed, hostID: "h-1", kind: "one-time-password") == Secret("hunter2-otp"))
        #expect(throws: (any Error).self) { try box.open(sealed, hostID: "h-2", kind: "one-time-password") }
    }

    @Test func secretNeverPrintsItself() {
        let secret = Secret("s3cret-value")
        #expect("\(secret)" == "<redacted>")
        #expect(String(describing: secret) == "<redacted>")
        #expect(String(reflecting: secret) == "<redacted>")
    }

    @Test func oneTimePasswordsAreLongShellSafeAndDistinct() {
        let passwords = (0..<200).map { _ in SecretBox.oneTimePassword().reveal() }
        #expect(Set(passwords).count == 200)
        for password in passwords {
            #expect(password.count == 32)
            #expect(password.allSatisfy { $0.isLetter || $0.isNumber } && password.allSatisfy(\.isASCII))
        }
    }

    @Test func hostTokenIsStablePerGenerationAndMatchesOnlyItsHash() {
        let token = box.hostToken(hostID: "h-1", generation: 1)
        #expect(token == box.hostToken(hostID: "h-1", generation: 1))
        #expect(token != box.hostToken(hostID: "h-1", generation: 2))
        #expect(token.reveal().count >= 43)  // 256 bits
        let hash = SecretBox.tokenHash(token)
        #expect(SecretBox.tokenMatches(token.reveal(), hash: hash))
        #expect(!SecretBox.tokenMatches(box.hostToken(hostID: "h-2", generation: 1).reveal(), hash: hash))
        #expect(!SecretBox.tokenMatches("", hash: hash))
    }

    @Test func masterKeyFileIsCreatedWithMode0600AndRefusedWhenReadableByOthers() throws {
        let path = NSTemporaryDirectory() + "onetouch-key-\(UUID().uuidString)/master.key"
        let key = try SecretBox.loadOrCreateMasterKey(at: path)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        let again = try SecretBox.loadOrCreateMasterKey(at: path)
        #expect(key.withUnsafeBytes { Data($0) } == again.withUnsafeBytes { Data($0) })
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        #expect(throws: MasterKeyError.self) { try SecretBox.loadOrCreateMasterKey(at: path) }
    }

    @Test func backoffIsCappedAndJittered() {
        let policy = RetryPolicy(baseDelay: .seconds(1), maxDelay: .seconds(20), maxAttempts: 10, budget: .seconds(600))
        #expect(policy.delay(afterAttempt: 1, unit: 0.999) <= .seconds(1))
        #expect(policy.delay(afterAttempt: 3, unit: 0.5) == .seconds(2))
        #expect(policy.delay(afterAttempt: 12, unit: 0.999) <= .seconds(20))
        #expect(policy.delay(afterAttempt: 12, unit: 0.999) > .seconds(19))
        #expect(policy.delay(afterAttempt: 5, unit: 0) == .zero)
    }
}

@Suite("The master key file")
struct MasterKeyFileTests {
    @Test func processesStartingAtOnceAllEndUpWithTheOneKeyOnDisk() async throws {
        let folder = NSTemporaryDirectory() + "onetouch-key-race-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/master.key"
        let keys = try await withThrowingTaskGroup(of: Data.self) { group in
            for _ in 0..<16 {
                group.addTask { try SecretBox.loadOrCreateMasterKey(at: path).withUnsafeBytes { Data($0) } }
            }
            return try await group.reduce(into: [Data]()) { $0.append($1) }
        }
        let onDisk = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(Set(keys) == [onDisk], "every caller uses the key that is on disk")
        let left = try FileManager.default.contentsOfDirectory(atPath: folder)
        #expect(left == ["master.key"], "no temporary file is left: \(left)")
    }

    @Test func noKeyIsMadeWhereTheDatabaseNeedsTheOldOne() throws {
        let path = NSTemporaryDirectory() + "onetouch-key-\(UUID().uuidString)/master.key"
        #expect(throws: MasterKeyError.self) { try SecretBox.loadOrCreateMasterKey(at: path, mayCreate: false) }
        #expect(!FileManager.default.fileExists(atPath: path))
    }
}
