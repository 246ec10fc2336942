import Crypto
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Seals secrets at rest with AES-256-GCM under the master key, and derives per-host tokens.
///
/// Sealed form: nonce (12 bytes) || ciphertext || tag (16 bytes). The associated data binds a sealed
/// value to its host and kind, so a value copied to another row does not open.
public struct SecretBox: Sendable {
    private let key: SymmetricKey

    public init(masterKey: SymmetricKey) { self.key = masterKey }

    public func seal(_ secret: Secret, hostID: String, kind: String) throws -> Data {
        let box = try AES.GCM.seal(Data(secret.reveal().utf8), using: key, authenticating: Data("\(hostID)/\(kind)".utf8))
        guard let combined = box.combined else { throw MasterKeyError("AES-GCM produced no combined box") }
        return combined
    }

    public func open(_ sealed: Data, hostID: String, kind: String) throws -> Secret {
        let box = try AES.GCM.SealedBox(combined: sealed)
        let plain = try AES.GCM.open(box, using: key, authenticating: Data("\(hostID)/\(kind)".utf8))
        return Secret(String(decoding: plain, as: UTF8.self))
    }

    /// The bearer token a host uses for the host API. Derived (HMAC-SHA256 under the master key) from
    /// the host id and generation, so the same user-data renders again after a crash while only its
    /// hash is stored.
    public func hostToken(hostID: String, generation: Int) -> Secret {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("host-token/\(hostID)/\(generation)".utf8), using: key)
        return Secret(Data(mac).base64URLEncoded())
    }

    /// SHA-256 of a token, the only form in which tokens are stored.
    public static func tokenHash(_ token: Secret) -> Data {
        Data(SHA256.hash(data: Data(token.reveal().utf8)))
    }

    /// Compares a presented token with a stored hash in constant time.
    public static func tokenMatches(_ presented: String, hash: Data) -> Bool {
        let candidate = Data(SHA256.hash(data: Data(presented.utf8)))
        guard candidate.count == hash.count else { return false }
        var difference: UInt8 = 0
        for (a, b) in zip(candidate, hash) { difference |= a ^ b }
        return difference == 0
    }

    /// A one-time password from the system CSPRNG, in an alphabet safe for shells and YAML (letters
    /// and digits only): 32 characters of 57 symbols, about 186 bits.
    public static func oneTimePassword() -> Secret {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789")  // 57 symbols
        // 32 symbols × log2(57) ≈ 186 bits.
        return Secret(String((0..<32).map { _ in alphabet[Int(generator.next(upperBound: UInt64(alphabet.count)))] }))
    }

    /// Reads the master key from `path`, creating it (32 random bytes, mode 0600) if it is absent and
    /// `mayCreate` (`serve` passes false once the database holds hosts: their secrets need the old key).
    public static func loadOrCreateMasterKey(at path: String, mayCreate: Bool = true) throws -> SymmetricKey {
        let fm = FileManager.default
        if !fm.fileExists(atPath: path) {
            guard mayCreate else {
                throw MasterKeyError(
                    "the master key file \(path) does not exist, but the database holds hosts whose secrets and tokens were made with a master key; restore the file from backup (a new key could open none of them)"
                )
            }
            if let key = try createMasterKey(at: path) { return key }
        }
        let attributes = try fm.attributesOfItem(atPath: path)
        if let mode = attributes[.posixPermissions] as? NSNumber, mode.intValue & 0o077 != 0 {
            throw MasterKeyError(
                "the master key file \(path) is readable by others (mode \(String(mode.intValue, radix: 8))); run `chmod 600 \(path)`"
            )
        }
        guard let data = fm.contents(atPath: path), data.count == 32 else {
            throw MasterKeyError("the master key file \(path) must hold exactly 32 bytes; restore it from backup")
        }
        return SymmetricKey(data: data)
    }
}

extension SecretBox {
    /// Creates the key file exclusively: written 0600 under a name of this process's own, synced, then
    /// linked to `path`, which fails if the file exists. So the file never exists with open
    /// permissions or half written, and of two processes starting at once exactly one key wins; the
    /// other reads it (nil here).
    static func createMasterKey(at path: String) throws -> SymmetricKey? {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let key = SymmetricKey(size: .bits256)
        let temporary = "\(path).new-\(getpid())-\(UUID().uuidString.prefix(8))"
        let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw MasterKeyError(
                "could not create the master key file \(path) (\(String(cString: strerror(errno)))); check that its folder is writable")
        }
        defer { unlink(temporary) }
        let written = key.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        Glibc.close(fd)
        guard written == 32, synced else {
            throw MasterKeyError("could not write the master key file \(path); check the disk has space")
        }
        guard link(temporary, path) == 0 else {
            if errno == EEXIST { return nil }  // another process made it first: use theirs
            throw MasterKeyError("could not create the master key file \(path) (\(String(cString: strerror(errno))))")
        }
        return key
    }
}

public struct MasterKeyError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Data {
    public func base64URLEncoded() -> String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
