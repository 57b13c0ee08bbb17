// swift-tools-version: 6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// The commit `wharf --version` names: `WHARF_COMMIT=$(git rev-parse --short HEAD) swift build …`
/// (hex digits only); "unknown" without it. Nothing runs git at run time.
let buildCommit = Context.environment["WHARF_COMMIT"].map { String($0.filter(\.isHexDigit).prefix(40)) }.flatMap { $0.isEmpty ? nil : $0 }

let package = Package(
    name: "wharf",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "wharf", targets: ["WharfCLI"]),
        .executable(name: "wharf-digest-bench", targets: ["DigestBench"]),
        .executable(name: "wharf-fixture-upstream", targets: ["FixtureUpstream"]),
        .executable(name: "wharf-index-bench", targets: ["IndexBench"]),
        .executable(name: "wharf-hitpath-bench", targets: ["HitPathBench"]),
        .executable(name: "wharf-startup-bench", targets: ["StartupBench"]),
        .executable(name: "wharf-loadgen", targets: ["LoadGen"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    ],
    targets: [
        // MARK: - System libraries (Debian: liblmdb-dev, zlib1g-dev, libssl-dev)
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        /// Only the SHA-256 benchmark links libcrypto (to compare it with swift-crypto).
        .systemLibrary(name: "COpenSSLCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        /// The build's commit as a C string (a define cannot carry a value into Swift).
        .target(name: "CWharfBuild", cSettings: buildCommit.map { [.define("WHARF_COMMIT", to: "\"\($0)\"")] } ?? []),

        // MARK: - Library targets
        /// How Wharf shows itself and its numbers to people: the version, byte counts (IEC units), durations.
        .target(name: "WharfText", dependencies: ["CWharfBuild"], swiftSettings: swiftSettings),
        /// Per-key rate limits as a value (failed logins, upstream look-ups per client).
        .target(name: "RateLimiting", swiftSettings: swiftSettings),
        /// The time behind Wharf's time-based decisions: the system's, or a test's that moves forward.
        .target(name: "WharfClock", swiftSettings: swiftSettings),
        /// The version and commit of this build (`wharf_build_info`, `wharf --version`).
        /// Log lines: logfmt or JSON, millisecond UTC timestamps, escaped values.
        .target(name: "WharfLogging", dependencies: [
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        /// Thin Swift wrapper over liblmdb.
        .target(name: "LMDB", dependencies: ["CLMDB"], swiftSettings: swiftSettings),
        /// OCI distribution domain: names, digests, media types, ranges, errors, auth challenges.
        .target(name: "OCIDistribution", dependencies: [
            .product(name: "Crypto", package: "swift-crypto"),
        ], swiftSettings: swiftSettings),
        /// On-disk content-addressed blob files plus the LMDB index.
        .target(name: "WharfStorage", dependencies: [
            "LMDB", "OCIDistribution", "WharfClock",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        /// Upstream registry client: token auth, redirects, the upstream's health (breakers, 429 holds).
        .target(name: "WharfUpstream", dependencies: [
            "OCIDistribution", "WharfClock", "WharfText",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        /// Mirror policy: manifest/tag resolution and single-flight blob fills.
        .target(name: "WharfMirror", dependencies: [
            "OCIDistribution", "WharfStorage", "WharfUpstream", "RateLimiting", "WharfClock", "WharfText", "WharfLogging",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        /// The YAML configuration file: schema, defaults, validation with line numbers.
        .target(name: "WharfConfig", dependencies: [
            "OCIDistribution",
            .product(name: "Yams", package: "Yams"),
        ], swiftSettings: swiftSettings),
        /// Client authentication: htpasswd (bcrypt) and pass-through of client credentials to the upstream.
        .target(name: "WharfAuth", dependencies: [
            "OCIDistribution", "WharfUpstream", "RateLimiting", "WharfClock",
            .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        /// The SwiftNIO HTTP/1.1 front: routing, OCI responses, sendfile.
        .target(name: "WharfHTTP", dependencies: [
            "OCIDistribution", "WharfMirror", "WharfAuth", "WharfText",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOExtras", package: "swift-nio-extras"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: swiftSettings),
        .executableTarget(name: "WharfCLI", dependencies: [
            "WharfConfig", "WharfAuth", "WharfHTTP", "WharfMirror", "WharfStorage", "WharfUpstream", "OCIDistribution", "WharfText", "WharfLogging",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),

        // MARK: - Test fixtures (image generator, token server, real registry launcher, tampering proxy)
        .target(name: "WharfTestSupport", dependencies: [
            "CZlib", "OCIDistribution",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
        ], swiftSettings: swiftSettings),

        // MARK: - Benchmarks
        .executableTarget(name: "DigestBench", dependencies: [
            "OCIDistribution", "COpenSSLCrypto",
            .product(name: "Crypto", package: "swift-crypto"),
        ], path: "loadtest/DigestBench", swiftSettings: swiftSettings),

        .executableTarget(name: "HitPathBench", dependencies: ["WharfStorage", "OCIDistribution"], path: "loadtest/HitPathBench", swiftSettings: swiftSettings),
        .executableTarget(name: "IndexBench", dependencies: ["LMDB", "WharfStorage", "OCIDistribution", "WharfClock"], path: "loadtest/IndexBench", swiftSettings: swiftSettings),
        .executableTarget(name: "StartupBench", dependencies: [
            "WharfMirror", "WharfStorage", "WharfUpstream", "OCIDistribution", "WharfClock",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "loadtest/StartupBench", swiftSettings: swiftSettings),
        /// HTTP load generator for registries: keep-alive connections, fixed concurrency or rate, HdrHistogram latencies.
        .executableTarget(name: "LoadGen", dependencies: [
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "loadtest/LoadGen", swiftSettings: swiftSettings),
        .executableTarget(name: "FixtureUpstream", dependencies: ["WharfTestSupport"], path: "loadtest/FixtureUpstream", swiftSettings: swiftSettings),

        // MARK: - Tests
        .testTarget(name: "LMDBTests", dependencies: ["LMDB"], swiftSettings: swiftSettings),
        .testTarget(name: "OCIDistributionTests", dependencies: ["OCIDistribution"], swiftSettings: swiftSettings),
        .testTarget(name: "WharfConfigTests", dependencies: [
            "WharfConfig", "WharfText",
            .product(name: "Yams", package: "Yams"),
        ], swiftSettings: swiftSettings),
        .testTarget(name: "WharfUpstreamTests", dependencies: ["WharfUpstream", "OCIDistribution"], swiftSettings: swiftSettings),
        .testTarget(name: "WharfStorageTests", dependencies: [
            "WharfStorage", "OCIDistribution", "WharfClock", "LMDB",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        .testTarget(name: "WharfMirrorTests", dependencies: [
            "WharfMirror", "WharfStorage", "WharfUpstream", "OCIDistribution",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        /// The HTTP front without sockets: connection state, the hit-path request scanner against NIO's decoder, in EmbeddedChannels.
        .testTarget(name: "WharfHTTPTests", dependencies: [
            "WharfHTTP", "WharfMirror", "WharfUpstream", "OCIDistribution", "WharfTestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        /// The log handler's logfmt and JSON lines, read back by parsers of their own.
        .testTarget(name: "WharfLoggingTests", dependencies: [
            "WharfLogging", "WharfTestSupport",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        .testTarget(name: "WharfTestSupportTests", dependencies: ["WharfTestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "WharfAuthTests", dependencies: [
            "WharfAuth", "RateLimiting",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        .testTarget(name: "WharfIntegrationTests", dependencies: [
            "WharfHTTP", "WharfMirror", "WharfStorage", "WharfUpstream", "OCIDistribution", "WharfTestSupport", "WharfConfig", "WharfAuth", "RateLimiting", "WharfClock",
            "WharfText", "WharfLogging",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
    ]
)
