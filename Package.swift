// swift-tools-version:6.2
import PackageDescription

/// Our own targets treat every warning as an error; dependencies are not affected.
let strict: [SwiftSetting] = [
    .treatAllWarnings(as: .error),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "onetouch",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "onetouch", targets: ["onetouch"])
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket", from: "1.6.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/adam-fowler/compress-nio", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // The workflow, engine, store and adapter protocols. Imports no HTTP library.
        .target(
            name: "OneTouchCore",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: strict
        ),
        // AWS EC2: SigV4, the Query API, credential chain, rate limiter, and the CloudProvider on top.
        .target(
            name: "OneTouchEC2",
            dependencies: [
                "OneTouchCore", .product(name: "Crypto", package: "swift-crypto"),
                // User-data over EC2's 16 KiB is sent gzip-compressed (cloud-init unpacks it).
                .product(name: "CompressNIO", package: "compress-nio"), .product(name: "NIOCore", package: "swift-nio"),
                // credential_process runs with a deadline.
                "OneTouchProcess",
            ],
            swiftSettings: strict
        ),
        // Helper programs run with a deadline, input on stdin (swift-subprocess).
        .target(
            name: "OneTouchProcess",
            dependencies: [
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        // Local VMs: QEMU processes, QMP, copy-on-write overlays, NoCloud seeds, LUKS-encrypted volumes.
        .target(
            name: "OneTouchQEMU",
            dependencies: [
                "OneTouchCore",
                "OneTouchProcess",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // The version and the commit built (`onetouch --version`, `/healthz`, serve's first log line).
        .target(name: "OneTouchBuildInfo", swiftSettings: strict, plugins: ["BuildInfoPlugin"]),
        .plugin(name: "BuildInfoPlugin", capability: .buildTool()),
        // Kerberos directories: MIT (kadmin) and FreeIPA (JSON-RPC).
        .target(name: "OneTouchKerberos", dependencies: ["OneTouchCore", "OneTouchProcess"], swiftSettings: strict),
        // The adapters' HTTP transport on AsyncHTTPClient (TLS with an optional private CA).
        .target(
            name: "OneTouchHTTP",
            dependencies: [
                "OneTouchCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
        // Slack: announcements (webhook, or a bot with one thread per host) and chatops.
        .target(
            name: "OneTouchSlack",
            dependencies: [
                "OneTouchCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "WSClient", package: "swift-websocket"),
            ],
            swiftSettings: strict
        ),
        // Admin API and host API over HTTP.
        .target(
            name: "OneTouchServer",
            dependencies: [
                "OneTouchCore",
                "OneTouchSlack",
                "OneTouchBuildInfo",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Command-line interface and the composition root.
        .target(
            name: "OneTouchCLI",
            dependencies: [
                "OneTouchCore",
                "OneTouchServer",
                "OneTouchEC2",
                "OneTouchQEMU",
                "OneTouchKerberos",
                "OneTouchHTTP",
                "OneTouchSlack",
                "OneTouchBuildInfo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "onetouch", dependencies: ["OneTouchCLI"], swiftSettings: strict),
        // `onetouch` plus the crash tests' kill switch (ONETOUCH_TEST_KILL_AT); test tooling, never shipped.
        .executableTarget(name: "onetouch-crashtest", dependencies: ["OneTouchCLI", "OneTouchTesting"], swiftSettings: strict),
        // Fakes of every adapter protocol. Never linked into the `onetouch` executable.
        .target(name: "OneTouchTesting", dependencies: ["OneTouchCore"], swiftSettings: strict),
        // `scripts/bench-engine` runs this: 1,000 hosts through the engine with fake adapters.
        .executableTarget(
            name: "onetouch-bench",
            dependencies: [
                "OneTouchCore", "OneTouchTesting", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "OneTouchCoreTests",
            dependencies: [
                "OneTouchCore", "OneTouchTesting", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "OneTouchServerTests",
            dependencies: [
                "OneTouchCore", "OneTouchServer", "OneTouchTesting",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "OneTouchProcessTests", dependencies: ["OneTouchProcess"], swiftSettings: strict),
        .testTarget(
            name: "OneTouchQEMUTests", dependencies: ["OneTouchQEMU", "OneTouchCore", "OneTouchProcess"], swiftSettings: strict),
        .testTarget(name: "OneTouchEC2Tests", dependencies: ["OneTouchEC2", "OneTouchCore"], swiftSettings: strict),
        .testTarget(
            name: "OneTouchKerberosTests", dependencies: ["OneTouchKerberos", "OneTouchCore", "OneTouchHTTP", "OneTouchTesting"],
            swiftSettings: strict),
        .testTarget(
            name: "OneTouchSlackTests",
            dependencies: [
                "OneTouchSlack", "OneTouchCore", "OneTouchServer", "OneTouchTesting", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "OneTouchCLITests",
            dependencies: ["OneTouchCLI", "OneTouchTesting", .product(name: "Hummingbird", package: "hummingbird")],
            swiftSettings: strict
        ),
    ]
)
