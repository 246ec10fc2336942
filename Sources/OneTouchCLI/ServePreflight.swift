import Foundation
import NIOCore
import NIOPosix
import OneTouchCore

/// What `serve` checks before it writes anything (opening the database creates and migrates it; the
/// master key is created when missing; the engine starts driving hosts): each refusal names the file
/// or address and what to do.
enum ServePreflight {
    static func check(_ configuration: Configuration, listen: Bool = true) async throws {
        let database: ExistingDatabase
        do { database = try ExistingDatabase.inspect(configuration.database) } catch let error as StoreOpenError {
            throw AdminClient.Failure(
                exitCode: 1, description: "\(error); onetouch does not start with a new database where one exists")
        }
        if case .hosts(let count) = database, count > 0, !FileManager.default.fileExists(atPath: configuration.masterKeyFile) {
            throw AdminClient.Failure(
                exitCode: 1,
                description: """
                    the master key file \(configuration.masterKeyFile) is missing, but the database \(configuration.database) \
                    holds \(count) host\(count == 1 ? "" : "s") whose secrets and host tokens depend on that key; \
                    restore the key from backup (docs/operations.md). A new key would make them unreadable, so none is created
                    """)
        }
        _ = try OneTouchApplication.serverBuilder(configuration)
        guard listen else { return }
        try await checkListen(host: configuration.listenHost, port: configuration.listenPort)
        if let host = configuration.hostListen { try await checkListen(host: host.host, port: host.port) }
    }

    /// Binds the listen address once and lets it go, so that an address in use is reported before the
    /// engine starts (the HTTP server binds it for good a moment later).
    static func checkListen(host: String, port: Int) async throws {
        do {
            let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port).get()
            try await channel.close()
        } catch {
            let why: String
            if let error = error as? IOError, error.errnoCode == EADDRINUSE {
                why = "the address is in use; is another `onetouch serve` running? (`ss -ltnp` shows which program has it)"
            } else {
                why = "\(error); check `listen` in the configuration"
            }
            throw AdminClient.Failure(exitCode: 1, description: "cannot listen on \(host):\(port): \(why)")
        }
    }
}
