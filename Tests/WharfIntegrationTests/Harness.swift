import NIOHTTP1
import Testing
import OCIDistribution
import Synchronization
import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import WharfAuth
import WharfClock
import WharfHTTP
import WharfMirror
import WharfStorage
import WharfTestSupport
import WharfUpstream
#if canImport(Glibc)
import Glibc
#endif

/// A real upstream for tests: a token server, Distribution 2.8 with token auth, seeded storage.
final class UpstreamEnvironment: Sendable {
    let directory: String
    let generator: ImageGenerator
    let storage: RegistryStorage
    let tokens: TokenServer
    let registry: RegistryProcess

    static let users = ["alice": "alice-secret", "bob": "bob-secret"]

    init(tokenLifetime: Int = 300) throws {
        self.directory = try TempDirectory.make("upstream")
        self.generator = try ImageGenerator(directory: self.directory + "/gen", seed: UInt64.random(in: 1...UInt64.max))
        self.storage = RegistryStorage(root: self.directory + "/storage")
        self.tokens = TokenServer(users: Self.users, privateRepositories: ["private/secret": ["alice"]], tokenLifetime: tokenLifetime)
        self.registry = RegistryProcess(storageRoot: self.directory + "/storage", tokenServer: self.tokens)
    }

    func start() async throws {
        try await self.tokens.start()
        try await self.registry.start()
    }

    func stop() async {
        try? await self.registry.stop()
        try? await self.tokens.stop()
        try? FileManager.default.removeItem(atPath: self.directory)
    }
}

/// Wharf running in-process on 127.0.0.1 with its own data folder.
final class WharfInstance: Sendable {
    let dataDirectory: String
    let mirror: Mirror
    let server: RegistryServer
    let http: UpstreamHTTPClients
    let port: Int
    private let serverTask: Task<Void, any Error>
    private let maintenanceTask: Task<Void, Never>

    var url: String { "http://127.0.0.1:\(self.port)" }
    var host: String { "127.0.0.1:\(self.port)" }

    static func start(
        upstream: String, credentials: UpstreamCredentials? = nil, tokenRealms: [String] = [], tagTTL: Duration = .seconds(300),
        staleWhileRevalidate: Duration = .zero, dataDirectory: String? = nil, maxSize: Int64? = nil, pins: [String] = [],
        idleTimeout: TimeAmount? = nil, clock: WharfClock = .system, configureServer: (inout RegistryServer.Configuration) -> Void = { _ in }
    ) async throws -> WharfInstance {
        var config = try UpstreamConfiguration(name: "test-upstream", url: upstream, credentials: credentials, tagTTL: tagTTL, tokenRealms: tokenRealms)
        config.staleWhileRevalidate = staleWhileRevalidate
        return try await self.start(
            upstreams: [MirrorUpstream(configuration: config, pins: pins, isDefault: true)], dataDirectory: dataDirectory, maxSize: maxSize,
            idleTimeout: idleTimeout, clock: clock, configure: configureServer)
    }

    /// Wharf with several upstreams, client authentication and/or a TLS listener.
    static func start(
        upstreams: [MirrorUpstream], dataDirectory: String? = nil, maxSize: Int64? = nil,
        auth: ((Logger) throws -> ClientAuthenticator)? = nil, tls: TLSCertificate? = nil, edge: EdgeSettings? = nil,
        notifier: ((HTTPClient, Logger) -> Notifier)? = nil, idleTimeout: TimeAmount? = nil, httpClients: UpstreamHTTPClients? = nil,
        logger customLogger: Logger? = nil, clock: WharfClock = .system, historyInterval: Duration = .seconds(10),
        configure: (inout RegistryServer.Configuration) -> Void = { _ in }
    ) async throws -> WharfInstance {
        let dir = try dataDirectory ?? TempDirectory.make("wharf")
        var logger = customLogger ?? Logger(label: "wharf-test")
        if customLogger == nil { logger.logLevel = ProcessInfo.processInfo.environment["WHARF_TEST_LOG"] == nil ? .error : .debug }
        let http = httpClients ?? UpstreamHTTPClients.make()
        let limits = try maxSize.map { try CacheLimits(maxBytes: $0) }
        let mirror = try Mirror(
            dataDirectory: dir, upstreams: upstreams, httpClients: http, logger: logger, limits: limits, notifier: notifier?(http.metadata, logger),
            clock: clock, historyInterval: historyInterval)
        var serverConfig = RegistryServer.Configuration(host: "127.0.0.1", port: 0, tls: tls)
        serverConfig.drainTimeout = .seconds(2)
        serverConfig.memoryCache = HitMemoryCache(budget: 128 << 20, mirror: mirror)  // as `wharf serve` has by default
        if let idleTimeout { serverConfig.idleTimeout = idleTimeout }
        configure(&serverConfig)
        let server = RegistryServer(configuration: serverConfig, mirror: mirror, auth: try auth?(logger), edge: edge, logger: logger)
        let task = Task { try await server.run() }
        let port = try await server.boundPort()
        let maintenance = Task { await mirror.runMaintenance() }
        return WharfInstance(dir: dir, mirror: mirror, server: server, http: http, port: port, task: task, maintenance: maintenance)
    }

    private init(dir: String, mirror: Mirror, server: RegistryServer, http: UpstreamHTTPClients, port: Int, task: Task<Void, any Error>, maintenance: Task<Void, Never>) {
        self.dataDirectory = dir
        self.mirror = mirror
        self.server = server
        self.http = http
        self.port = port
        self.serverTask = task
        self.maintenanceTask = maintenance
    }

    func stop(removeData: Bool = true) async {
        self.server.beginShutdown()
        _ = try? await self.serverTask.value
        self.maintenanceTask.cancel()
        await self.maintenanceTask.value
        try? await self.http.shutdown()
        if removeData { try? FileManager.default.removeItem(atPath: self.dataDirectory) }
    }

    /// GETs `repository:v1` (which links its blobs) and then `layers` through this Wharf, and waits until
    /// each layer is indexed: from then on they are hits.
    func cache(_ layers: [GeneratedBlob], of repository: String) async throws {
        _ = try await RawHTTP.request("GET /v2/\(repository)/manifests/v1 HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: self.port)
        for layer in layers {
            _ = try await RawHTTP.request("GET /v2/\(repository)/blobs/\(layer.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: self.port)
        }
        let cached = await eventually("layers of \(repository) were not indexed") { layers.allSatisfy { self.isIndexed($0.digest) } }
        guard cached else {
            throw FixtureError.invalid("layers of \(repository) were not indexed within 5 s")
        }
    }

    /// True once `digest` is in the index (a fill's client has its bytes before the commit; until
    /// then a request for it is a miss, not a hit).
    func isIndexed(_ digest: String) -> Bool {
        (try? self.mirror.index.blob(Digest(parsing: digest))) != nil
    }

    /// Files under blobs/ (relative), for asserting what was cached.
    func cachedBlobHexes() -> Set<String> {
        let root = self.dataDirectory + "/blobs/sha256"
        var out = Set<String>()
        for prefix in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: root + "/" + prefix)) ?? [] { out.insert(name) }
        }
        return out
    }

    func tempFiles() -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: self.dataDirectory + "/tmp")) ?? [] }

    /// Bytes of the files under blobs/.
    func blobBytesOnDisk() -> Int64 { CacheFiles.blobs(in: self.dataDirectory).values.reduce(0, +) }
}

/// A clock for the mirror that a test moves forward instead of sleeping through a TTL (tags, tokens,
/// pull grants, last-access times): the system's time plus the sum of every ``advance(by:)``.
final class ManualClock: Sendable {
    private let skip = Mutex<Duration>(.zero)

    var clock: WharfClock { WharfClock { self.skip.withLock { $0 } } }

    /// From now on the mirror's time is `duration` further ahead of the system's (whole seconds
    /// count for times the index records).
    func advance(by duration: Duration) {
        self.skip.withLock { $0 += duration }
    }
}

/// Runs `body` with a started upstream (Distribution with token auth) and a Wharf in front of it, and
/// tears both down (server stopped, Distribution and the token server stopped by PID, temporary
/// folders removed) however `body` ends: returning, throwing, or cancelled by the suite's time limit.
/// Errors `body` throws are recorded as test failures.
func withWharf(
    tokenLifetime: Int = 300, tagTTL: Duration = .seconds(300), staleWhileRevalidate: Duration = .zero, maxSize: Int64? = nil,
    pins: [String] = [], clock: WharfClock = .system,
    seed: (UpstreamEnvironment) throws -> Void = { _ in }, proxy: Bool = false,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (WharfFixture) async throws -> Void
) async throws {
    let upstream = try UpstreamEnvironment(tokenLifetime: tokenLifetime)
    var tampering: TamperingProxy?
    var wharf: WharfInstance?
    do {
        try seed(upstream)
        try await upstream.start()
        if proxy {
            let p = TamperingProxy(upstream: upstream.registry.url)
            tampering = p
            try await p.start()
        }
        let started = try await WharfInstance.start(
            upstream: tampering?.url ?? upstream.registry.url, tagTTL: tagTTL, staleWhileRevalidate: staleWhileRevalidate, maxSize: maxSize,
            pins: pins, clock: clock)
        wharf = started
        try await body(WharfFixture(wharf: started, upstream: upstream, proxy: tampering))
    } catch {
        Issue.record(error, sourceLocation: sourceLocation)
    }
    // Teardown runs in a task of its own, so a cancelled test (time limit) still stops everything.
    await Task { [wharf, tampering] in
        await wharf?.stop()
        try? await tampering?.stop()
        await upstream.stop()
    }.value
}

/// What ``withWharf(tokenLifetime:tagTTL:staleWhileRevalidate:maxSize:pins:clock:seed:proxy:sourceLocation:_:)`` hands its body.
struct WharfFixture {
    let wharf: WharfInstance
    let upstream: UpstreamEnvironment
    /// The tampering proxy between Wharf and the upstream, if asked for.
    let proxy: TamperingProxy?
}

/// What a data folder holds, read straight from the disk and the index (for a folder no server uses).
enum CacheFiles {
    /// hex → size of every file under blobs/sha256/.
    static func blobs(in dataDirectory: String) -> [String: Int64] {
        let root = dataDirectory + "/blobs/sha256"
        var out: [String: Int64] = [:]
        for prefix in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: root + "/" + prefix)) ?? [] {
                out[name] = FileSystemCalls.fileSize(root + "/" + prefix + "/" + name)
            }
        }
        return out
    }

    /// hex → recorded size of every blob in the index. Opens and closes the index, so no Mirror in
    /// this process may have the folder open.
    static func indexed(in dataDirectory: String) throws -> [String: Int64] {
        let index = try CacheIndex(directory: dataDirectory + "/index")
        var out: [String: Int64] = [:]
        var after: OCIDistribution.Digest?
        while true {
            let batch = try index.blobs(after: after, limit: 1000)
            guard let last = batch.last else { return out }
            after = last.digest
            for (d, r) in batch { out[d.hex] = r.size }
        }
    }

    static func tempFiles(in dataDirectory: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: dataDirectory + "/tmp")) ?? []
    }
}

/// The real `wharf` executable (built by `swift build --build-tests`) as a child process.
struct WharfProcess {
    let child: ChildProcess
    let port: Int
    let dataDirectory: String

    var host: String { "127.0.0.1:\(self.port)" }
    var url: String { "http://\(self.host)" }

    /// `WHARF_EXECUTABLE` if set (e.g. a release build: some faults only show in optimised code),
    /// else the binary next to the test bundle, or `.build/debug/wharf` under the package root.
    static var executable: String {
        if let chosen = ProcessInfo.processInfo.environment["WHARF_EXECUTABLE"], !chosen.isEmpty { return chosen }
        let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let candidates = [bundleDir + "/wharf", packageRoot + "/.build/debug/wharf"]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[1]
    }

    /// Starts `wharf serve` on a free loopback port and waits until it answers `GET /healthz`.
    static func start(upstream: String, dataDirectory: String, extraArguments: [String] = []) async throws -> WharfProcess {
        var lastOutput = ""
        for attempt in 0..<3 {
            let port = try FreePort.loopback()
            let child = try ChildProcess.spawn(
                executable: Self.executable,
                arguments: ["serve", "--listen", "127.0.0.1:\(port)", "--upstream", upstream, "--data-dir", dataDirectory] + extraArguments,
                outputPath: dataDirectory + "-wharf-\(port)-\(attempt).log")  // beside the data folder, removed with it
            let deadline = ContinuousClock.now + .seconds(20)
            while child.isRunning, ContinuousClock.now < deadline {
                if let r = try? await RawHTTP.request("GET /healthz HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: port), r.status == 200 {
                    return WharfProcess(child: child, port: port, dataDirectory: dataDirectory)
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            lastOutput = child.output()
            await child.terminate(timeout: .seconds(2))
        }
        throw FixtureError.invalid("wharf did not start: \(lastOutput)")
    }

    /// kill -9, and wait until it is gone.
    func kill() async throws {
        self.child.signal(SIGKILL)
        try await self.child.waitForExit(timeout: .seconds(10))
    }

    /// SIGTERM (graceful), then SIGKILL if it takes too long; returns the exit status.
    @discardableResult
    func stop() async -> Int32 { await self.child.terminate(timeout: .seconds(10)) }

    /// Runs `wharf ARGUMENTS` (verify, gc, …) to completion. One still running after `timeout` is
    /// stopped (SIGTERM, then SIGKILL) and the timeout thrown, its output in the message.
    static func run(_ arguments: [String], timeout: Duration = .seconds(60)) async throws -> (status: Int32, output: String) {
        let child = try ChildProcess.spawn(
            executable: Self.executable, arguments: arguments,
            outputPath: NSTemporaryDirectory() + "wharf-cli-\(getpid())-\(UUID().uuidString.prefix(8)).log")
        defer { try? FileManager.default.removeItem(atPath: child.outputPath) }
        do {
            let status = try await child.waitForExit(timeout: timeout)
            return (status, child.output())
        } catch {
            await child.terminate(timeout: .seconds(2))
            throw FixtureError.timeout("wharf \(arguments.joined(separator: " ")) still running after \(timeout): \(child.output().suffix(2000))")
        }
    }
}

enum TempDirectory {
    static func make(_ label: String) throws -> String {
        let path = NSTemporaryDirectory() + "wharf-\(label)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

extension StreamingSHA256 {
    /// Feeds a response body chunk into the product's own hasher.
    mutating func update(_ buffer: ByteBuffer) { buffer.withUnsafeReadableBytes { self.update($0) } }
}

enum Hashing {
    static func sha256Hex(file path: String) throws -> String {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var h = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { h.update(data: chunk) }
        return h.finalize().map { String(format: "%02x", $0) }.joined()
    }
}

/// Checks that a skopeo `dir:` copy holds every expected blob with the right content.
enum SkopeoDir {
    static func verify(directory: String, expected: [GeneratedBlob]) throws -> [String] {
        var problems: [String] = []
        for blob in expected {
            let path = directory + "/" + blob.hex
            guard FileManager.default.fileExists(atPath: path) else { problems.append("missing \(blob.digest)"); continue }
            let hex = try Hashing.sha256Hex(file: path)
            if hex != blob.hex { problems.append("content of \(blob.digest) hashes to \(hex)") }
        }
        return problems
    }
}

extension WharfInstance {
    /// Starts `upstream`, then a Wharf in front of it (as ``start(upstream:)`` does or, with
    /// `configure`, with an upstream configuration changed by it), runs `body`, and stops both; an
    /// error thrown by `body` is recorded as the test's.
    static func behind(
        _ upstream: HostileUpstream, configure: ((inout UpstreamConfiguration) -> Void)? = nil, _ body: (WharfInstance) async throws -> Void
    ) async throws {
        try await upstream.start()
        let wharf: WharfInstance
        if let configure {
            var configuration = try UpstreamConfiguration(name: "test-upstream", url: upstream.url)
            configure(&configuration)
            wharf = try await Self.start(upstreams: [MirrorUpstream(configuration: configuration, isDefault: true)])
        } else {
            wharf = try await Self.start(upstream: upstream.url)
        }
        do {
            try await body(wharf)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }
}
