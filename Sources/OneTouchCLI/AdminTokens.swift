import Foundation
import OneTouchCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Admin tokens, read the same way by `serve` (`admin_tokens`) and by the CLI (`--token-file`,
/// `ONETOUCH_TOKEN_FILE`, `ONETOUCH_TOKEN`): one token per line, optionally after its name (`alice
/// TOKEN`: events record what that token did as `admin:alice`), blank lines and `#` comments ignored,
/// surrounding spaces trimmed. A token without a name is named by a short fingerprint of its hash.
/// A token file that its group or others may read is refused, as the master key is: whoever reads it
/// is an administrator.
enum AdminTokens {
    struct Entry {
        let name: String
        let token: Secret
    }

    /// Why the tokens could not be read; the caller says where they were configured.
    struct Problem: Error, CustomStringConvertible {
        let description: String
    }

    static func load(_ source: SecretSource, environment: [String: String]) throws(Problem) -> [Entry] {
        let raw: String
        switch source {
        case .file(let path):
            try requirePrivate(path)
            do { raw = try source.load(environment: environment).reveal() } catch {
                throw Problem(description: "cannot read the token file \(path); check the path and its permissions")
            }
        case .environment(let name):
            do { raw = try source.load(environment: environment).reveal() } catch {
                throw Problem(description: "the environment variable \(name) is not set or empty")
            }
        }
        let entries = try parse(raw, source: source.name)
        guard !entries.isEmpty else {
            throw Problem(description: "no admin token found in \(source.name); put one on a line of its own (`#` starts a comment)")
        }
        return entries
    }

    /// The tokens in a file's text: one per line, `TOKEN` or `NAME TOKEN`; blank lines and lines
    /// starting with `#` are not tokens. A name is letters, digits and `.-_@`, each used once.
    static func parse(_ text: String, source: String) throws(Problem) -> [Entry] {
        var entries: [Entry] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let fields = trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            let entry: Entry
            switch fields.count {
            case 1:
                let token = Secret(fields[0])
                entry = Entry(
                    name: "token-" + SecretBox.tokenHash(token).prefix(4).map { String(format: "%02x", $0) }.joined(), token: token)
            case 2:
                guard fields[0].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".-_@".contains($0)) }), fields[0].count <= 64
                else {
                    throw Problem(
                        description:
                            "line \(index + 1) of \(source): a token's name is letters, digits and .-_@ (at most 64), then the token")
                }
                entry = Entry(name: fields[0], token: Secret(fields[1]))
            default:
                throw Problem(description: "line \(index + 1) of \(source): write a token, or a name and a token, separated by a space")
            }
            if entries.contains(where: { $0.name == entry.name }) {
                throw Problem(description: "line \(index + 1) of \(source): the name \(entry.name) is used twice; give each token its own")
            }
            entries.append(entry)
        }
        return entries
    }

    /// Refuses a file (or the file a link points to) that its group or others may read or write.
    static func requirePrivate(_ path: String) throws(Problem) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw Problem(description: "cannot read the token file \(path) (\(String(cString: strerror(errno)))); check the path")
        }
        let mode = Int(info.st_mode) & 0o777
        if mode & 0o077 != 0 {
            throw Problem(
                description:
                    "the token file \(path) is open to others (mode \(String(mode, radix: 8))); whoever reads it is an administrator: run `chmod 600 \(path)`"
            )
        }
    }
}

extension SecretSource {
    /// Where the secret comes from, for messages: the file's path or the variable's name.
    var name: String {
        switch self {
        case .file(let path): path
        case .environment(let name): "$\(name)"
        }
    }
}
