import Foundation
import Logging
import OCIDistribution
import Synchronization
import Testing
import WharfMirror
import WharfTestSupport
import WharfUpstream

/// Keeps the access log's `request` lines (their metadata) in memory.
final class AccessLogCapture: Sendable {
    private let lines = Mutex<[[String: String]]>([])

    var all: [[String: String]] { self.lines.withLock { $0 } }

    func logger() -> Logger {
        var logger = Logger(label: "wharf-outcomes") { _ in Handler(capture: self) }
        logger.logLevel = .info
        return logger
    }

    private struct Handler: LogHandler {
        let capture: AccessLogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            guard event.message.description == "request" else { return }
            let fields = (event.metadata ?? [:]).mapValues { "\($0)" }
            self.capture.lines.withLock { $0.append(fields) }
        }
    }
}

/// One outcome record per request feeds `/stats`, `/metrics` and the access log: after a mixed run
/// over both request paths (event-loop hits, async misses, ranges, HEADs, errors, aborts) the three
/// agree on every request and cache counter.
@Suite(.serialized, .timeLimit(.minutes(3)), .tags(.integration))
struct OutcomeAgreementTests {
    @Test("after a mixed run, /stats, /metrics and the access log agree on requests, hits, misses and bytes")
    func threeViewsAgree() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [20_000, 300_000, 3 << 20], format: .oci)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        let other = try upstream.generator.image(layerSizes: [40_000], format: .oci)
        try upstream.storage.add(image: other, repository: "team/other", tag: "v1")
        try await upstream.start()
        let log = AccessLogCapture()
        let config = try UpstreamConfiguration(name: "test-upstream", url: upstream.registry.url)
        let wharf = try await WharfInstance.start(upstreams: [MirrorUpstream(configuration: config, isDefault: true)], logger: log.logger())
        do {
            var sent = 0
            func get(_ path: String, method: String = "GET", headers: String = "") async throws -> RawHTTP.Response {
                sent += 1
                return try await RawHTTP.request("\(method) \(path) HTTP/1.1\r\nHost: w\r\n\(headers)Connection: close\r\n\r\n", port: wharf.port)
            }
            let layers = image.layers
            _ = try await get("/v2/team/app/manifests/v1")                        // miss
            _ = try await get("/v2/team/app/manifests/v1")                        // hit (event loop)
            _ = try await get("/v2/team/app/manifests/v1", method: "HEAD")        // hit, no body
            _ = try await get("/v2/team/app/manifests/\(image.manifest.digest)")  // hit by digest
            for layer in layers {
                _ = try await get("/v2/team/app/blobs/\(layer.digest)")            // misses (fills)
                #expect(await eventually { wharf.cachedBlobHexes().contains(String(layer.digest.dropFirst(7))) })
            }
            #expect(await eventually { wharf.mirror.fills.inFlight == 0 })
            for layer in layers {
                _ = try await get("/v2/team/app/blobs/\(layer.digest)")            // hits: inline, inline, sendfile
                _ = try await get("/v2/team/app/blobs/\(layer.digest)", method: "HEAD")
                _ = try await get("/v2/team/app/blobs/\(layer.digest)", headers: "Range: bytes=10-1009\r\n")  // async hit, 206
            }
            _ = try await get("/v2/team/other/blobs/\(other.layers[0].digest)", method: "HEAD")  // HEAD asked upstream: miss
            _ = try await get("/v2/team/app/blobs/sha256:\(String(repeating: "0", count: 64))")   // BLOB_UNKNOWN
            _ = try await get("/v2/team/app/manifests/nope")                                     // MANIFEST_UNKNOWN
            _ = try await get("/v2/team/app/tags/list")
            _ = try await get("/v2/")
            // A client that goes away in the middle of a big hit: still one request, counted once.
            let cut = try await RawHTTP.request(
                "GET /v2/team/app/blobs/\(layers[2].digest) HTTP/1.1\r\nHost: w\r\n\r\n", port: wharf.port, maxBytes: 64 << 10)
            sent += 1
            #expect(cut.status == 200)
            #expect(await eventually { log.all.count == sent }, "every request is logged once: \(log.all.count) of \(sent)")

            let stats = try JSONSerialization.jsonObject(with: Data(try await get("/stats").body)) as? [String: Any] ?? [:]
            let metrics = try await get("/metrics").bodyText
            let lines = log.all.filter { $0["kind"] != "status" }
            func logged(_ kind: String, _ cache: String? = nil) -> [[String: String]] {
                lines.filter { $0["kind"] == kind && (cache == nil || $0["cache"] == cache) }
            }
            func bytes(_ lines: [[String: String]]) -> Int { lines.reduce(0) { $0 + (Int($1["bytes"] ?? "") ?? 0) } }
            func metric(_ series: String) -> Int? {
                for line in metrics.split(separator: "\n") where line.hasPrefix(series + " ") { return Int(Double(line.dropFirst(series.count + 1)) ?? -1) }
                return nil
            }
            /// A route's requests: the sum over its status classes.
            func requestsMetric(_ route: String) -> Int {
                metrics.split(separator: "\n").filter { $0.hasPrefix("wharf_requests_total{route=\"\(route)\",") }
                    .reduce(0) { $0 + Int(Double($1.split(separator: " ").last ?? "") ?? -1_000_000) }
            }
            let requests = stats["requests"] as? [String: Int] ?? [:]
            for kind in ["blob", "manifest", "tags", "base"] {
                #expect(requests[kind] == logged(kind).count, "\(kind): /stats \(requests[kind] ?? -1), log \(logged(kind).count)")
                #expect(requestsMetric(kind) == logged(kind).count, "\(kind) in /metrics")
            }
            let cache = stats["cache"] as? [String: Any] ?? [:]
            let served = stats["bytes"] as? [String: Any] ?? [:]
            let checks: [(String, Int?, Int?, Int)] = [
                ("blob hits", cache["blobHits"] as? Int, metric("wharf_cache_hits_total{kind=\"blob\"}"), logged("blob", "hit").count),
                ("blob misses", cache["blobMisses"] as? Int, metric("wharf_cache_misses_total{kind=\"blob\"}"), logged("blob", "miss").count),
                ("manifest hits", cache["manifestHits"] as? Int, metric("wharf_cache_hits_total{kind=\"manifest\"}"), logged("manifest", "hit").count),
                ("manifest misses", cache["manifestMisses"] as? Int, metric("wharf_cache_misses_total{kind=\"manifest\"}"), logged("manifest", "miss").count),
                ("bytes from disk", served["servedFromDisk"] as? Int, metric("wharf_served_bytes_total{source=\"disk\"}"), bytes(logged("blob", "hit"))),
                ("bytes from fills", served["servedFromFills"] as? Int, metric("wharf_served_bytes_total{source=\"fill\"}"), bytes(logged("blob", "miss"))),
            ]
            for (name, fromStats, fromMetrics, fromLog) in checks {
                #expect(fromStats == fromLog && fromMetrics == fromLog, "\(name): /stats \(fromStats ?? -1), /metrics \(fromMetrics ?? -1), log \(fromLog)")
            }
            // What the run did, so agreement is not agreement on zero.
            #expect(logged("blob", "hit").count == 10 && logged("blob", "miss").count == 4, "\(logged("blob").map { "\($0["method"] ?? "") \($0["status"] ?? "") \($0["cache"] ?? "")" })")
            #expect(logged("manifest", "hit").count == 3 && logged("manifest", "miss").count == 1)
            #expect(logged("blob").contains { $0["cache"] == "BLOB_UNKNOWN" && $0["status"] == "404" })
            #expect(logged("blob").contains { $0["status"] == "206" && $0["bytes"] == "1000" })
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }
}
