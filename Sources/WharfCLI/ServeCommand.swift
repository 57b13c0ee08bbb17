import Foundation
import ArgumentParser
import Logging
import ServiceLifecycle
import UnixSignals
import AsyncHTTPClient
import WharfHTTP
import WharfMirror
import WharfStorage
import WharfUpstream

/// `wharf serve`: runs the mirror in the foreground until SIGTERM/SIGINT.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run the mirror in the foreground.")

    @Option(help: "Address to listen on, HOST:PORT.")
    var listen = "0.0.0.0:5000"

    @Option(help: "Upstream registry URL.")
    var upstream = UpstreamConfiguration.dockerHubURL

    @Option(name: .customLong("data-dir"), help: "Cache folder (blobs, tmp, LMDB index).")
    var dataDirectory = "./data"

    @Option(name: .customLong("max-size"), help: "Cache size bound, e.g. 200GiB; least recently used blobs are evicted past it. Unbounded if not given.")
    var maxSize: String?

    @Option(name: .customLong("high-watermark"), help: "Start evicting when the cache passes this percentage of --max-size.")
    var highWatermark = 90

    @Option(name: .customLong("low-watermark"), help: "Evict until the cache is at or under this percentage of --max-size.")
    var lowWatermark = 80

    @Option(name: .customLong("upstream-credentials"), help: "File holding 'user:password' for the upstream (else WHARF_UPSTREAM_USERNAME/PASSWORD).")
    var upstreamCredentials: String?

    @Option(name: .customLong("pin"), help: "Image whose cached blobs are never evicted, REPO[:TAG] or REPO@DIGEST (repeatable).")
    var pins: [String] = []

    @Option(name: .customLong("tag-ttl"), help: "Seconds a tag → digest answer is served without asking the upstream.")
    var tagTTL = 300

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.")
    var logLevel = "info"

    func run() async throws {
        let level = Logger.Level(rawValue: self.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "wharf")
        let (host, port) = try ListenAddress.parse(self.listen)
        let limits = try self.maxSize.map { try self.cacheLimits(maxBytes: ByteSize.parse($0)) }
        let credentials = try self.upstreamCredentials.map { try UpstreamCredentials.load(file: $0) } ?? UpstreamCredentials.fromEnvironment()
        let upstreamConfig = try UpstreamConfiguration(url: self.upstream, credentials: credentials, tagTTL: .seconds(self.tagTTL))

        let http = UpstreamClient.makeHTTPClient()
        let mirror = try Mirror(
            dataDirectory: self.dataDirectory, upstream: upstreamConfig, httpClient: http, logger: logger, limits: limits, pins: self.pins)
        let server = RegistryServer(configuration: .init(host: host, port: port), mirror: mirror, logger: logger)
        logger.info("starting wharf", metadata: [
            "upstream": "\(upstreamConfig.url)", "data-dir": "\(self.dataDirectory)",
            "credentials": "\(credentials == nil ? "anonymous" : "configured")",
            "cache-limit": "\(limits.map { "\($0)" } ?? "unbounded")",
        ])
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: MaintenanceService(mirror: mirror, server: server)), .init(service: server)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        do {
            try await group.run()
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    private func cacheLimits(maxBytes: Int64) throws -> CacheLimits {
        do {
            return try CacheLimits(maxBytes: maxBytes, highWatermarkPercent: self.highWatermark, lowWatermarkPercent: self.lowWatermark)
        } catch {
            throw ValidationError("--max-size/--high-watermark/--low-watermark: \(error)")
        }
    }
}

/// Background upkeep as a service, started once the server listens: the index ↔ disk check,
/// eviction, and batched last-access writes.
struct MaintenanceService: Service {
    let mirror: Mirror
    let server: RegistryServer
    func run() async throws {
        _ = try await self.server.boundPort()
        await cancelWhenGracefulShutdown { await self.mirror.runMaintenance() }
    }
}

enum ListenAddress {
    static func parse(_ s: String) throws -> (String, Int) {
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--listen must be HOST:PORT, got '\(s)'")
        }
        var host = String(s[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }
}

/// Sizes like `512MiB`, `200GiB`, `1TB`, or plain bytes.
enum ByteSize {
    static func parse(_ s: String) throws -> Int64 {
        let units: [(String, Int64)] = [
            ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10),
            ("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1_000), ("B", 1),
        ]
        let t = s.trimmingCharacters(in: .whitespaces)
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            if let v = Double(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), v >= 0 { return Int64(v * Double(factor)) }
        }
        if let v = Int64(t), v >= 0 { return v }
        throw ValidationError("size '\(s)' must be a number with an optional unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB)")
    }
}
