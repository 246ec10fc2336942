import OneTouchCore

/// A `/onetouch` command, parsed from the text after the command name. Pure.
public enum ChatCommand: Sendable, Equatable {
    case create(name: String, role: String)
    case status(name: String)
    case list(state: HostState.Kind?)
    case resume(name: String)
    case retry(name: String, from: Step)
    case destroy(name: String)
    case help

    public var verb: ChatVerb? {
        switch self {
        case .create: .create
        case .status: .status
        case .list: .list
        case .resume: .resume
        case .retry: .retry
        case .destroy: .destroy
        case .help: nil
        }
    }

    /// The host the command is about, if any.
    public var hostName: String? {
        switch self {
        case .create(let name, _), .status(let name), .resume(let name), .retry(let name, _), .destroy(let name): name
        case .list, .help: nil
        }
    }

    public static let usage = """
        `/onetouch create NAME role=ROLE` · `status NAME` · `list [STATE]` · `resume NAME` · `retry NAME from=STEP` · `destroy NAME`
        """

    /// Why a command could not be read, with the usage.
    public struct Unreadable: Error, Equatable, CustomStringConvertible {
        public var reason: String
        public var description: String { "\(reason). Usage: \(ChatCommand.usage)" }
    }

    /// Parses `create web-01 role=web`; `--role web` and `--from STEP` (the CLI's spelling) work too.
    public static func parse(_ text: String) throws(Unreadable) -> ChatCommand {
        var words = text.split(whereSeparator: \.isWhitespace).map(String.init)
        guard !words.isEmpty else { return .help }
        let verb = words.removeFirst().lowercased()
        var options: [String: String] = [:]
        var positional: [String] = []
        var index = 0
        while index < words.count {
            let word = words[index]
            if word.hasPrefix("--") {
                guard index + 1 < words.count else { throw Unreadable(reason: "\(word) needs a value") }
                options[String(word.dropFirst(2))] = words[index + 1]
                index += 2
                continue
            }
            if let equals = word.firstIndex(of: "="), equals != word.startIndex {
                options[String(word[..<equals])] = String(word[word.index(after: equals)...])
            } else {
                positional.append(word)
            }
            index += 1
        }
        func name() throws(Unreadable) -> String {
            guard positional.count == 1 else { throw Unreadable(reason: "`\(verb)` takes one host name") }
            do { return try HostName.validate(positional[0]) } catch { throw Unreadable(reason: error.description) }
        }
        func only(_ allowed: Set<String>) throws(Unreadable) {
            if let extra = options.keys.sorted().first(where: { !allowed.contains($0) }) {
                throw Unreadable(reason: "`\(verb)` does not take \(extra)=")
            }
        }
        switch verb {
        case "create":
            try only(["role"])
            guard let role = options["role"], !role.isEmpty else { throw Unreadable(reason: "`create` needs role=ROLE") }
            return .create(name: try name(), role: role)
        case "status":
            try only([])
            return .status(name: try name())
        case "list":
            try only(["state"])
            let raw = options["state"] ?? positional.first
            guard positional.count <= 1 else { throw Unreadable(reason: "`list` takes at most a state") }
            guard let raw else { return .list(state: nil) }
            guard let state = HostState.Kind(rawValue: raw) else {
                throw Unreadable(
                    reason: "unknown state '\(raw)'; use one of \(HostState.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return .list(state: state)
        case "resume":
            try only([])
            return .resume(name: try name())
        case "retry":
            try only(["from"])
            guard let raw = options["from"] else { throw Unreadable(reason: "`retry` needs from=STEP") }
            guard let step = Step(rawValue: raw), !step.isTeardown else {
                throw Unreadable(reason: "unknown step '\(raw)'; use one of \(Step.provisioning.map(\.rawValue).joined(separator: ", "))")
            }
            return .retry(name: try name(), from: step)
        case "destroy":
            try only([])
            return .destroy(name: try name())
        case "help":
            return .help
        default:
            throw Unreadable(reason: "unknown command '\(verb)'")
        }
    }
}
