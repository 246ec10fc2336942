extension BuildInfo {
    /// `onetouch 0.7.0 (commit 1d5c2fd0a1b2)`: what `--version`, `/healthz` and serve's first log
    /// line say.
    public static var description: String { "onetouch \(version) (commit \(commit))" }
}
