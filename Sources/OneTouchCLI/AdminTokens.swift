import Foundation
import OneTouchCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Admin tokens, read the same way by `serve` (`admin_tokens`) and by the CLI (`--token-file`,
/// `ONETOUCH_TOKEN_FILE`, `ONETOUCH_TOKEN`): one token per line, blank lines and `#` comments ignored,
/// surrounding spaces trimmed. A token file that its group or others may read is refused, as the
/// master key is: whoever reads it is an administrator.
enum AdminTokens {
    /// Why the tokens could not be read; the caller says where they were configured.
    struct Problem: Error, CustomStringConvertible {
        let description: String
    }

    static func load(_ source: SecretSource, environment: [String: String]) throws(Problem) -> [Secret] {
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
        let tokens = parse(raw)
        guard !tokens.isEmpty else {
            throw Problem(description: "no admin token found in \(source.name); put one on a line of its own (`#` starts a comment)")
        }
        return tokens.map(Secret.init)
    }

    /// The tokens in a file's text: one per line; blank lines and lines starting with `#` are not tokens.
    static func parse(_ text: String) -> [String] {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
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
