/// Host names as users type them: an RFC 1123 label or FQDN, lower case, at most 63 characters per
/// label and 253 in all.
public enum HostName {
    public struct Invalid: Error, CustomStringConvertible, Equatable {
        public let name: String
        public let reason: String
        public var description: String {
            "invalid host name '\(name.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 ? String($0) : "?" }.joined())': \(reason)"
        }
    }

    /// Checks `name` and returns it unchanged, or throws saying what is wrong and how to fix it.
    public static func validate(_ name: String) throws(Invalid) -> String {
        if name.isEmpty { throw Invalid(name: name, reason: "the name is empty; give a name such as web-01") }
        if name.count > 253 { throw Invalid(name: name, reason: "longer than 253 characters") }
        if name != name.lowercased() {
            throw Invalid(name: name, reason: "use lower case only (try '\(name.lowercased())')")
        }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            if label.isEmpty { throw Invalid(name: name, reason: "empty label (two dots in a row, or a leading or trailing dot)") }
            if label.count > 63 { throw Invalid(name: name, reason: "the label '\(label.prefix(20))…' is longer than 63 characters") }
            if label.first == "-" || label.last == "-" {
                throw Invalid(name: name, reason: "a label may not start or end with '-'")
            }
            if let bad = label.first(where: { !(("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-") }) {
                throw Invalid(
                    name: name, reason: "'\(bad.isASCII && !bad.isNewline ? String(bad) : "?")' is not allowed; use a-z, 0-9 and '-'")
            }
        }
        return name
    }

    /// The FQDN for a validated name in the configured `domain`: a name without a dot gets the domain;
    /// a name with a dot is already fully qualified and must be inside the domain (`web-01.evil.com`
    /// would be launched and get a principal there).
    public static func fqdn(_ name: String, domain: String) throws(Invalid) -> String {
        guard name.contains(".") else { return "\(name).\(domain)" }
        let domain = domain.lowercased().trimmingSuffix(".")
        guard name.hasSuffix("." + domain) else {
            let short = name.split(separator: ".").first.map(String.init) ?? name
            throw Invalid(
                name: name, reason: "only hosts in \(domain) are made here; give a short name (\(short)) or one ending in .\(domain)")
        }
        return name
    }
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
