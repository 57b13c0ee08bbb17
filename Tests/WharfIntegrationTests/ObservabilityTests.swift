import Foundation
import OCIDistribution
import Testing
import WharfMirror
import WharfStorage
import WharfTestSupport
import WharfText

/// `/_ping`, `/healthz`, `/readyz`, `/stats`, `/metrics` and the dashboard report what actually happened.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct ObservabilityTests {
    static func get(_ path: String, _ port: Int) async throws -> RawHTTP.Response {
        try await RawHTTP.request("GET \(path) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: port)
    }

    /// The value of one series in Prometheus text format.
    static func metric(_ series: String, in text: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    @Test("stats and metrics match N hits and M misses")
    func statsMatchTraffic() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [100_000, 50_000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            let ping = try await Self.get("/_ping", wharf.port)
            #expect(ping.status == 200 && ping.bodyText == #"{"Error":"","Healthy":true}"#)
            #expect(try await Self.get("/healthz", wharf.port).status == 200)
            let ready = try await Self.get("/readyz", wharf.port)
            #expect(ready.status == 200 && ready.bodyText.contains(#""ready":true"#))

            // 2 manifest GETs by tag (1 miss, 1 hit); layer 0: 1 miss + 3 hits; layer 1: 1 miss.
            for _ in 0..<2 { #expect(try await Self.get("/v2/team/app/manifests/v1", wharf.port).status == 200) }
            let l0 = image.layers[0], l1 = image.layers[1]
            // A fill commits just after its client got the last byte: each next request must find it indexed.
            let indexed = { (blob: GeneratedBlob) in wharf.isIndexed(blob.digest) }
            #expect(try await Self.get("/v2/team/app/blobs/\(l0.digest)", wharf.port).status == 200)
            await eventually("layer 0 was never indexed") { indexed(l0) && wharf.mirror.fills.inFlight == 0 }
            for _ in 0..<3 { #expect(try await Self.get("/v2/team/app/blobs/\(l0.digest)", wharf.port).status == 200) }
            #expect(try await Self.get("/v2/team/app/blobs/\(l1.digest)", wharf.port).status == 200)
            await eventually("layer 1 was never indexed") { indexed(l1) && wharf.mirror.fills.inFlight == 0 }

            let statsResponse = try await Self.get("/stats", wharf.port)
            #expect(statsResponse.status == 200)
            let stats = try JSONSerialization.jsonObject(with: Data(statsResponse.body)) as? [String: Any] ?? [:]
            let cache = stats["cache"] as? [String: Any] ?? [:]
            #expect(cache["blobHits"] as? Int == 3)
            #expect(cache["blobMisses"] as? Int == 2)
            #expect(cache["manifestHits"] as? Int == 1)
            #expect(cache["manifestMisses"] as? Int == 1)
            let ratio = cache["hitRatioByRequests"] as? Double ?? -1
            #expect(abs(ratio - 4.0 / 7.0) < 1e-9)
            let bytes = stats["bytes"] as? [String: Any] ?? [:]
            #expect(bytes["servedFromDisk"] as? Int == 3 * l0.size)
            #expect(bytes["servedFromFills"] as? Int == l0.size + l1.size)
            #expect(bytes["fetchedFromUpstream"] as? Int == l0.size + l1.size)
            #expect(bytes["saved"] as? Int == 3 * l0.size)
            let fills = stats["fills"] as? [String: Any] ?? [:]
            #expect(fills["completed"] as? Int == 2)
            #expect(fills["inFlight"] as? Int == 0)
            let requests = stats["requests"] as? [String: Any] ?? [:]
            #expect(requests["blob"] as? Int == 5)
            #expect(requests["manifest"] as? Int == 2)
            let top = stats["topRepositoriesByPulls"] as? [[String: Any]] ?? []
            #expect(top.first?["name"] as? String == "team/app" && top.first?["pulls"] as? Int == 2)
            let disk = stats["disk"] as? [String: Any] ?? [:]
            #expect(disk["usedBytes"] as? Int == l0.size + l1.size)
            #expect((stats["evictions"] as? [String: Any])?["count"] as? Int == 0)
            let entries = stats["entries"] as? [String: Any] ?? [:]
            #expect(entries["blobs"] as? Int == 2)

            let metrics = try await Self.get("/metrics", wharf.port)
            #expect(metrics.status == 200)
            let text = metrics.bodyText
            let expected: [(String, Double)] = [
                (#"wharf_cache_hits_total{kind="blob"}"#, 3), (#"wharf_cache_misses_total{kind="blob"}"#, 2),
                (#"wharf_cache_hits_total{kind="manifest"}"#, 1), (#"wharf_requests_total{route="blob",status_class="2xx"}"#, 5),
                (#"wharf_requests_total{route="blob",status_class="4xx"}"#, 0),
                (#"wharf_upstream_bytes_total{upstream="test-upstream"}"#, Double(l0.size + l1.size)),
                (#"wharf_served_bytes_total{source="disk"}"#, Double(3 * l0.size)),
                (#"wharf_cache_entries{kind="blobs"}"#, 2), ("wharf_fills_in_flight", 0), (#"wharf_upstream_up{upstream="test-upstream"}"#, 1),
                ("wharf_disk_used_bytes", Double(l0.size + l1.size)), (#"wharf_evictions_total{reason="lru"}"#, 0),
                (#"wharf_build_info{version="\#(WharfVersion.version)",commit="\#(WharfVersion.commit)"}"#, 1),
            ]
            for (series, value) in expected {
                #expect(Self.metric(series, in: text) == value, "\(series)")
            }
            // Unbounded: no limit and no watermarks, rather than a -1.
            for absent in ["wharf_disk_limit_bytes", "wharf_disk_high_watermark_bytes", "wharf_disk_low_watermark_bytes", "wharf_upstream_ratelimit_remaining"] {
                #expect(!text.contains(absent), "\(absent) is shown")
            }
            #expect(text.contains("wharf_request_duration_seconds_bucket"))

            let page = try await Self.get("/", wharf.port)
            #expect(page.status == 200 && page.header("content-type")?.hasPrefix("text/html") == true)
            #expect(page.bodyText.contains("team/app") && page.bodyText.contains("Hit ratio"))
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }
}
