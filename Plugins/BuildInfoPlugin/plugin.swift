import Foundation
import PackagePlugin

/// Writes `BuildInfo.swift` (the version from `VERSION` and the git commit) before every build, with
/// `scripts/build-info`; the file changes only when the commit does.
@main
struct BuildInfoPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "generated")
        return [
            .prebuildCommand(
                displayName: "Build info (version and commit)",
                executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: [
                    context.package.directoryURL.appending(path: "scripts/build-info").path(),
                    context.package.directoryURL.path(), output.path(),
                ],
                outputFilesDirectory: output)
        ]
    }
}
