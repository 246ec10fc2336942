import Foundation
import NIOCore
import NIOPosix
import OneTouchCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `onetouch serve` refuses what is wrong before it writes anything, and says where: the key of a
/// configuration error, the path of a database, the address in use.
@Suite("serve: refusals before anything is written", .serialized)
struct ServeStartTests {
    /// A folder with a configuration that would start (EC2 and MIT settings are not contacted before the
    /// engine runs), to be spoiled one setting at a time.
    struct Setup {
        let folder: String
        var listen = "127.0.0.1:0"
        var endpoint = "http://127.0.0.1:9"
        var database: String { folder + "/data/onetouch.sqlite" }
        var masterKey: String { folder + "/master.key" }
        var config: String { folder + "/onetouch.yaml" }
        var tokenFile: String { folder + "/admin-token" }

        init() throws {
            folder = NSTemporaryDirectory() + "onetouch-serve-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try "# admins\n\(String(repeating: "a", count: 32))\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
            chmod(tokenFile, 0o600)
            try "not a real keytab".write(toFile: folder + "/provisioner.keytab", atomically: true, encoding: .utf8)
        }

        func write() throws {
            try """
            listen: \(listen)
            public_url: http://127.0.0.1:8780
            database: data/onetouch.sqlite
            master_key_file: master.key
            admin_tokens: {file: admin-token}
            domain: onetouch.test
            config: {repository: "https://git.example.test/config.git"}
            roles:
              web: {instance_type: t3.small}
            provider:
              kind: ec2
              region: us-east-1
              endpoint: "\(endpoint)"
              image_id: ami-12345678
            directory:
              kind: mit
              realm: ONETOUCH.TEST
              admin_server: 127.0.0.1:9
              kdc: 127.0.0.1:9
              principal: onetouch/admin
              keytab: provisioner.keytab
            """.write(toFile: config, atomically: true, encoding: .utf8)
        }

        func serve() async throws -> (status: Int32, stdout: String, stderr: String) {
            try await onetouch(["serve", "--config", config])
        }

        /// `onetouch config check` on the same file and environment.
        func check() async throws -> (status: Int32, stdout: String, stderr: String) {
            try await onetouch(["config", "check", config])
        }

        /// `onetouch ARGUMENTS` on the written configuration, with test AWS credentials and no AWS files.
        private func onetouch(_ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
            try write()
            return try await Child.run(
                "onetouch", arguments,
                environment: [
                    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_CONFIG_FILE": folder + "/no-aws-config",
                    "AWS_SHARED_CREDENTIALS_FILE": folder + "/no-aws-credentials",
                ])
        }

        /// Nothing was created beside the configuration: no database, no master key.
        func expectNothingWritten(sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(!FileManager.default.fileExists(atPath: database), "database created", sourceLocation: sourceLocation)
            #expect(!FileManager.default.fileExists(atPath: masterKey), "master key created", sourceLocation: sourceLocation)
        }

        func remove() { try? FileManager.default.removeItem(atPath: folder) }
    }

    @Test func configCheckSaysWhatServeWouldRefuseWithServesWordsAndWritesNothing() async throws {
        var setup = try Setup()
        defer { setup.remove() }
        let good = try await setup.check()
        #expect(good.status == 0, "\(good.stderr)")
        #expect(good.stdout.contains("serve would start with it (provider ec2, directory mit, notifier log, roles web"))
        setup.expectNothingWritten()

        setup.endpoint = "ftp://ec2.example.test"
        let (check, serve) = (try await setup.check(), try await setup.serve())
        #expect(check.status == 2 && serve.status == 2)
        // serve's log begins with its version line; the refusal after it is word for word check's.
        let refusal = serve.stderr.split(separator: "\n").filter { !$0.contains(" Starting") }.joined(separator: "\n")
        #expect(serve.stderr.contains("Starting") && serve.stderr.contains("version=0."))
        #expect(check.stderr.trimmingCharacters(in: .newlines) == refusal, "the same words")
        #expect(check.stderr.contains("provider.endpoint: invalid EC2 endpoint URL"))

        setup.endpoint = "http://127.0.0.1:9"
        chmod(setup.tokenFile, 0o640)
        let open = try await setup.check()
        #expect(open.status == 2)
        #expect(open.stderr.contains("admin_tokens: the token file \(setup.tokenFile) is open to others (mode 640)"))
        setup.expectNothingWritten()
    }

    @Test func aBadEndpointIsReportedUnderProviderEndpoint() async throws {
        var setup = try Setup()
        defer { setup.remove() }
        setup.endpoint = "ftp://ec2.example.test"
        let run = try await setup.serve()
        #expect(run.status == 2)
        #expect(run.stderr.contains("provider.endpoint: invalid EC2 endpoint URL 'ftp://ec2.example.test'"), "\(run.stderr)")
        #expect(!run.stderr.contains("provider.region"))
        setup.expectNothingWritten()
    }

    @Test func anAdminTokenFileOthersMayReadIsRefused() async throws {
        let setup = try Setup()
        defer { setup.remove() }
        chmod(setup.tokenFile, 0o640)
        let run = try await setup.serve()
        #expect(run.status == 2)
        #expect(run.stderr.contains("admin_tokens: the token file \(setup.tokenFile) is open to others (mode 640)"), "\(run.stderr)")
        #expect(run.stderr.contains("chmod 600"))
        setup.expectNothingWritten()
    }

    @Test func aPortInUseNamesTheAddress() async throws {
        var setup = try Setup()
        defer { setup.remove() }
        let taken = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(taken.localAddress?.port)
        setup.listen = "127.0.0.1:\(port)"
        let run = try await setup.serve()
        try await taken.close()
        #expect(run.status == 1)
        #expect(run.stderr.contains("cannot listen on 127.0.0.1:\(port): the address is in use"), "\(run.stderr)")
        setup.expectNothingWritten()
    }

    @Test func noNewMasterKeyBesideADatabaseThatHoldsHosts() async throws {
        let setup = try Setup()
        defer { setup.remove() }
        let store = try Store(path: setup.database)
        _ = try await store.createHost(
            id: "h-0001",
            spec: HostSpec(
                name: "web-01", fqdn: "web-01.onetouch.test", role: "web", instanceType: "t3.small", volumeGiB: 10, playbook: "web.yml"),
            tokenHash: Data(repeating: 1, count: 32), now: Date(), actor: "test")
        let run = try await setup.serve()
        #expect(run.status == 1)
        #expect(run.stderr.contains("the master key file \(setup.masterKey) is missing, but the database \(setup.database) holds 1 host"))
        #expect(run.stderr.contains("restore the key from backup"))
        #expect(!FileManager.default.fileExists(atPath: setup.masterKey), "no new key")
    }

    @Test(arguments: ["garbage", "folder"])
    func aDatabaseThatDoesNotOpenIsNeverReplaced(kind: String) async throws {
        let setup = try Setup()
        defer { setup.remove() }
        try FileManager.default.createDirectory(atPath: setup.folder + "/data", withIntermediateDirectories: true)
        if kind == "folder" {
            try FileManager.default.createDirectory(atPath: setup.database, withIntermediateDirectories: true)
        } else {
            try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: setup.database))
        }
        let run = try await setup.serve()
        #expect(run.status == 1)
        #expect(run.stderr.contains("cannot open the database \(setup.database)"), "\(run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: setup.masterKey))
        if kind == "garbage" {
            #expect(try Data(contentsOf: URL(fileURLWithPath: setup.database)) == Data(repeating: 0x42, count: 8192), "left as it was")
        }
    }

    /// A disk that is full when `serve` starts: it says so, naming the database. Needs a small tmpfs, so it
    /// runs where this user may mount one (root in CI containers) and is skipped elsewhere.
    @Test(.enabled(if: getuid() == 0)) func aFullDiskSaysSo() async throws {
        let setup = try Setup()
        defer { setup.remove() }
        let data = setup.folder + "/data"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        guard try await Child.run("/bin/mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", data]).status == 0 else { return }

        // Fill it up.
        #expect(FileManager.default.createFile(atPath: data + "/filler", contents: nil))
        let filler = try FileHandle(forWritingTo: URL(fileURLWithPath: data + "/filler"))
        while (try? filler.write(contentsOf: Data(repeating: 0, count: 4096))) != nil {}
        try? filler.close()
        let result = await Task { try await setup.serve() }.result
        _ = try await Child.run("/bin/umount", [data])
        let run = try result.get()
        #expect(run.status == 1)
        #expect(run.stderr.contains("cannot open the database \(setup.database): the disk is full"), "\(run.stderr)")
    }
}
