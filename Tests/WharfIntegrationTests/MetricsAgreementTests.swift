import Foundation
import Testing
import WharfMirror
import WharfTestSupport
import WharfUpstream
import WharfText

/// `/metrics` against `/stats` after a mixed workload through two upstreams: every figure both show
/// is the same, every upstream series is labelled with its upstream, unknown values are absent
/// series, and the Grafana dashboard in `deploy/` asks only for metrics Wharf exports.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct MetricsAgreementTests {
    @Test("two upstreams, hits, misses, manifests, blobs, ranges, 404s: /stats and /metrics agree on every shared figure")
    func statsAndMetricsAgree() async throws {
        let r = try await MultiUpstreamTests.TwoRegistries.start()
        let wharf = try await WharfInstance.start(upstreams: try r.upstreams())
        do {
            let get = { (path: String, method: String, headers: String) in
                try await RawHTTP.request("\(method) \(path) HTTP/1.1\r\nHost: w\r\n\(headers)Connection: close\r\n\r\n", port: wharf.port)
            }
            func expect(_ path: String, _ status: Int, method: String = "GET", headers: String = "") async throws {
                let response = try await get(path, method, headers)
                #expect(response.status == status, "\(method) \(path): \(response.status) \(response.bodyText.prefix(200))")
            }
            let alpine = r.alpine, tool = r.tool
            // Hub (default, ns docker.io, prefix dockerhub): manifest miss, hits by tag and digest, a HEAD.
            try await expect("/v2/library/alpine/manifests/3.20", 200)
            try await expect("/v2/library/alpine/manifests/3.20", 200)
            try await expect("/v2/library/alpine/manifests/3.20?ns=docker.io", 200, method: "HEAD")
            try await expect("/dockerhub/v2/library/alpine/manifests/\(alpine.manifest.digest)", 200)
            // Quay (ns quay.io, prefix quay): two tags, one image.
            try await expect("/v2/org/tool/manifests/1?ns=quay.io", 200)
            try await expect("/v2/quay/org/tool/manifests/2", 200)
            // Blobs: misses (fills) on both upstreams, then hits, HEADs and a range.
            let blobs: [(String, GeneratedBlob)] = [("/v2/library/alpine", alpine.layers[0])] + tool.layers.map { ("/v2/quay/org/tool", $0) }
            for (repo, blob) in blobs {
                try await expect("\(repo)/blobs/\(blob.digest)", 200)
                await eventually("\(blob.digest) was not cached") { wharf.cachedBlobHexes().contains(blob.hex) && wharf.mirror.fills.inFlight == 0 }
            }
            for (repo, blob) in blobs {
                try await expect("\(repo)/blobs/\(blob.digest)", 200)
                try await expect("\(repo)/blobs/\(blob.digest)", 200, method: "HEAD")
            }
            try await expect("/v2/library/alpine/blobs/\(alpine.layers[0].digest)", 206, headers: "Range: bytes=0-99\r\n")
            // Refusals: unknown blob and manifest, an unknown namespace, a denied repository, no such endpoint.
            try await expect("/v2/library/alpine/blobs/sha256:\(String(repeating: "0", count: 64))", 404)
            try await expect("/v2/quay/org/tool/manifests/nope", 404)
            try await expect("/v2/library/alpine/manifests/3.20?ns=ghcr.io", 404)
            try await expect("/v2/quay/org/secret-tool/manifests/1", 403)
            try await expect("/nowhere", 404)
            // Metadata: tags, the base endpoint.
            try await expect("/v2/quay/org/tool/tags/list", 200)
            try await expect("/v2/", 200)
            await eventually("fills still running") { wharf.mirror.fills.inFlight == 0 }

            // /metrics, /stats, /metrics: each status request is counted once it is answered.
            let before = try Exposition(try await get("/metrics", "GET", "").bodyText)
            let statsResponse = try await get("/stats", "GET", "")
            let after = try Exposition(try await get("/metrics", "GET", "").bodyText)
            let stats = try #require(try JSONSerialization.jsonObject(with: Data(statsResponse.body)) as? [String: Any])

            // Apart from the status route and the process's own figures, the two scrapes are identical.
            let steady = { (e: Exposition) in
                e.samples.filter { $0.labels["route"] != "status" && !$0.name.hasPrefix("process_") }.map(\.line).sorted()
            }
            #expect(steady(before) == steady(after), "the figures moved between two scrapes of an idle Wharf")

            // Requests by route and by status class; the duration histogram counts the same requests.
            let requests = try #require(stats["requests"] as? [String: Int])
            for (route, count) in requests {
                let extra = route == "status" ? 1 : 0  // the first /metrics, answered before /stats was counted
                #expect(Int(before.sum("wharf_requests_total", ["route": route])) + extra == count, "requests \(route)")
                #expect(Int(after.sum("wharf_requests_total", ["route": route])) == count + extra, "requests \(route)")
                #expect(Int(before.sum("wharf_request_duration_seconds_count", ["route": route])) + extra == count, "durations \(route)")
            }
            let byStatus = try #require(stats["requestsByStatus"] as? [String: Int])
            #expect(Set(byStatus.keys) == ["2xx", "3xx", "4xx", "5xx", "none"])
            for (statusClass, count) in byStatus {
                let extra = statusClass == "2xx" ? 1 : 0
                #expect(Int(before.sum("wharf_requests_total", ["status_class": statusClass])) + extra == count, "status \(statusClass)")
            }
            #expect(byStatus["4xx"] == 5, "the five refusals: \(byStatus)")

            // Cache, bytes, fills, referrers, evictions, disk and entries.
            let cache = try #require(stats["cache"] as? [String: Any])
            let bytes = try #require(stats["bytes"] as? [String: Any])
            let fills = try #require(stats["fills"] as? [String: Any])
            let evictions = try #require(stats["evictions"] as? [String: Any])
            let disk = try #require(stats["disk"] as? [String: Any])
            let entries = try #require(stats["entries"] as? [String: Any])
            let referrers = try #require(stats["referrers"] as? [String: Any])
            let shared: [(String, Any?, String, [String: String])] = [
                ("blob hits", cache["blobHits"], "wharf_cache_hits_total", ["kind": "blob"]),
                ("manifest hits", cache["manifestHits"], "wharf_cache_hits_total", ["kind": "manifest"]),
                ("blob misses", cache["blobMisses"], "wharf_cache_misses_total", ["kind": "blob"]),
                ("manifest misses", cache["manifestMisses"], "wharf_cache_misses_total", ["kind": "manifest"]),
                ("stale serves", cache["staleServes"], "wharf_stale_serves_total", [:]),
                ("revalidations", cache["revalidations"], "wharf_tag_revalidations_total", [:]),
                ("negative hits", cache["negativeHits"], "wharf_negative_hits_total", [:]),
                ("memory hits", cache["memoryHits"], "wharf_memory_hits_total", [:]),
                ("stale-while-revalidate", cache["staleWhileRevalidateServes"], "wharf_stale_while_revalidate_serves_total", [:]),
                ("budget stale serves", cache["budgetStaleServes"], "wharf_ratelimit_budget_stale_serves_total", [:]),
                ("bytes from disk", bytes["servedFromDisk"], "wharf_served_bytes_total", ["source": "disk"]),
                ("bytes from fills", bytes["servedFromFills"], "wharf_served_bytes_total", ["source": "fill"]),
                ("bytes from ranges", bytes["servedFromUpstreamRanges"], "wharf_served_bytes_total", ["source": "upstream-range"]),
                ("bytes fetched", bytes["fetchedFromUpstream"], "wharf_upstream_bytes_total", [:]),
                ("fills in flight", fills["inFlight"], "wharf_fills_in_flight", [:]),
                ("fills started", fills["started"], "wharf_fills_started_total", [:]),
                ("fills completed", fills["completed"], "wharf_fills_completed_total", [:]),
                ("fills failed", fills["failed"], "wharf_fills_failed_total", [:]),
                ("digest mismatches", fills["digestMismatches"], "wharf_digest_mismatches_total", [:]),
                ("followers", fills["followersJoined"], "wharf_fill_followers_total", [:]),
                ("ranged relays", fills["rangedRelays"], "wharf_ranged_relays_total", [:]),
                ("referrers upstream", referrers["upstream"], "wharf_referrers_served_total", ["source": "upstream"]),
                ("referrers tag schema", referrers["tagSchema"], "wharf_referrers_served_total", ["source": "tag-schema"]),
                ("referrers empty", referrers["empty"], "wharf_referrers_served_total", ["source": "empty"]),
                ("evictions", evictions["count"], "wharf_evictions_total", ["reason": "lru"]),
                ("evicted bytes", evictions["bytes"], "wharf_evicted_bytes_total", ["reason": "lru"]),
                ("eviction passes", evictions["passes"], "wharf_eviction_passes_total", [:]),
                ("declined fills", evictions["declinedFills"], "wharf_declined_fills_total", [:]),
                ("declined bytes", evictions["declinedBytes"], "wharf_declined_bytes_total", [:]),
                ("disk used", disk["usedBytes"], "wharf_disk_used_bytes", [:]),
                ("blob entries", entries["blobs"], "wharf_cache_entries", ["kind": "blobs"]),
                ("manifest entries", entries["manifests"], "wharf_cache_entries", ["kind": "manifests"]),
                ("tag entries", entries["tags"], "wharf_cache_entries", ["kind": "tags"]),
            ]
            for (what, fromStats, name, labels) in shared {
                let value = try #require(fromStats as? Int, "\(what) is not in /stats")
                #expect(before.has(name, labels), "\(name)\(labels) is missing")
                #expect(Int(before.sum(name, labels)) == value, "\(what): /stats \(value), /metrics \(before.sum(name, labels))")
            }
            #expect(cache["blobHits"] as? Int == 7 && cache["blobMisses"] as? Int == 3, "what the run did (GETs, HEADs, a range): \(cache)")
            #expect(cache["manifestHits"] as? Int == 3 && cache["manifestMisses"] as? Int == 3, "\(cache)")
            let referrerSources = Set(before.samples.filter { $0.name == "wharf_referrers_served_total" }.compactMap { $0.labels["source"] })
            #expect(referrerSources == Set(ReferrersSource.allCases.map(\.rawValue)))

            // Per upstream: requests, errors, bytes, reachability and pull budget, each labelled with its upstream.
            let upstreams = try #require(stats["upstreams"] as? [[String: Any]])
            #expect(upstreams.compactMap { $0["name"] as? String } == ["hub", "quay"])
            for u in upstreams {
                let name = try #require(u["name"] as? String), labels = ["upstream": name]
                for (key, metric) in [("requests", "wharf_upstream_requests_total"), ("errors", "wharf_upstream_errors_total"),
                                      ("bytes", "wharf_upstream_bytes_total"), ("budgetRefusals", "wharf_ratelimit_budget_refusals_total")] {
                    let value = try #require(u[key] as? Int, "\(name) \(key)")
                    #expect(before.value(metric, labels) == Double(value), "\(name) \(key): /stats \(value), /metrics \(String(describing: before.value(metric, labels)))")
                }
                #expect((u["requests"] as? Int ?? 0) > 0 && (u["bytes"] as? Int ?? 0) > 0, "\(name) saw no traffic")
                #expect(before.value("wharf_upstream_up", labels) == 1 && (u["health"] as? [String: Any])?["reachable"] as? Bool == true)
                #expect(before.value("wharf_upstream_circuit_open", labels) == 0)
                // Distribution sends no RateLimit headers: no budget series at all, rather than -1.
                #expect((u["rateLimitBudgets"] as? [Any])?.isEmpty == true)
                #expect(!before.has("wharf_upstream_ratelimit_remaining", labels) && !before.has("wharf_upstream_ratelimit_limit", labels))
            }
            for sample in before.samples where sample.name.hasPrefix("wharf_upstream_") || sample.name.hasPrefix("wharf_ratelimit_budget_refusals") {
                #expect(sample.labels["upstream"] != nil, "\(sample.line) has no upstream label")
            }
            #expect(Int(before.sum("wharf_upstream_bytes_total", [:])) == (bytes["fetchedFromUpstream"] as? Int ?? -1))

            // No sentinels: nothing is -1, and an unbounded cache has no limit series.
            #expect(!before.samples.contains { $0.value == -1 }, "\(before.samples.filter { $0.value == -1 }.map(\.line))")
            #expect(disk["limitBytes"] == nil && !before.has("wharf_disk_limit_bytes", [:]))

            // Build and process.
            let build = try #require(stats["build"] as? [String: String])
            #expect(build == ["version": WharfVersion.version, "commit": WharfVersion.commit])
            #expect(before.value("wharf_build_info", ["version": WharfVersion.version, "commit": WharfVersion.commit]) == 1)
            let now = Date().timeIntervalSince1970
            #expect((before.value("process_resident_memory_bytes") ?? 0) > 1_000_000)
            #expect((before.value("process_virtual_memory_bytes") ?? 0) >= before.value("process_resident_memory_bytes") ?? .infinity)
            #expect((before.value("process_cpu_seconds_total") ?? 0) > 0)
            let fds = before.value("process_open_fds") ?? 0
            #expect(fds > 3 && fds <= before.value("process_max_fds") ?? 0)
            let started = before.value("process_start_time_seconds") ?? 0
            #expect(started > now - 24 * 3600 && started <= now + 1, "process_start_time_seconds \(started), now \(now)")
            #expect(before.types["process_cpu_seconds_total"] == "counter" && before.types["process_open_fds"] == "gauge")

            // Every family shown is one Wharf declares, and every metric the dashboard asks for is one of them.
            let names = wharf.mirror.stats.metricNames
            for family in before.types.keys { #expect(names.contains(family), "\(family) is exported but not declared") }
            let dashboardMetrics = try Self.dashboardMetrics()
            #expect(dashboardMetrics.count >= 30, "\(dashboardMetrics)")
            for metric in dashboardMetrics {
                let family = ["_bucket", "_sum", "_count"].first { metric.hasSuffix($0) && names.contains(String(metric.dropLast($0.count))) }
                    .map { String(metric.dropLast($0.count)) } ?? metric
                #expect(names.contains(family), "the dashboard asks for \(metric), which Wharf does not export")
            }
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await r.stop()
    }

    /// Every `wharf_…` and `process_…` name in the expressions of `deploy/grafana/wharf-dashboard.json`.
    static func dashboardMetrics() throws -> Set<String> {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let data = try Data(contentsOf: root.appendingPathComponent("deploy/grafana/wharf-dashboard.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        var exprs: [String] = []
        for panel in dashboard["panels"] as? [[String: Any]] ?? [] {
            for target in panel["targets"] as? [[String: Any]] ?? [] { exprs += [target["expr"] as? String].compactMap { $0 } }
        }
        let templating = (dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]] ?? []
        for variable in templating { exprs += [variable["definition"] as? String].compactMap { $0 } }
        var names = Set<String>()
        for expr in exprs {
            for match in expr.matches(of: /\b(?:wharf|process)_[a-z0-9_]+/) { names.insert(String(match.output)) }
        }
        return names
    }
}

/// Prometheus text format as a scraper reads it: `# TYPE` lines and samples with escaped label values.
struct Exposition {
    struct Sample {
        let name: String
        let labels: [String: String]
        let value: Double
        let line: String
    }

    struct Malformed: Error, CustomStringConvertible {
        let description: String
    }

    private(set) var samples: [Sample] = []
    /// Family name → `counter`, `gauge`, `histogram`.
    private(set) var types: [String: String] = [:]

    init(_ text: String) throws {
        for line in text.split(separator: "\n").map(String.init) {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count == 4 else { throw Malformed(description: line) }
                guard self.types.updateValue(String(parts[3]), forKey: String(parts[2])) == nil else {
                    throw Malformed(description: "family \(parts[2]) appears twice")
                }
                continue
            }
            if line.hasPrefix("#") { continue }
            self.samples.append(try Self.sample(line))
        }
    }

    private static func sample(_ line: String) throws -> Sample {
        let s = Array(line.unicodeScalars)
        var i = 0
        var name = ""
        while i < s.count, s[i] != "{", s[i] != " " { name.unicodeScalars.append(s[i]); i += 1 }
        var labels: [String: String] = [:]
        if i < s.count, s[i] == "{" {
            i += 1
            while i < s.count, s[i] != "}" {
                var key = ""
                while i < s.count, s[i] != "=" { key.unicodeScalars.append(s[i]); i += 1 }
                guard i + 1 < s.count, s[i + 1] == "\"" else { throw Malformed(description: line) }
                i += 2
                var value = ""
                while i < s.count, s[i] != "\"" {
                    if s[i] == "\\", i + 1 < s.count {
                        i += 1
                        value += s[i] == "n" ? "\n" : String(s[i])
                    } else {
                        value.unicodeScalars.append(s[i])
                    }
                    i += 1
                }
                i += 1
                labels[key] = value
                if i < s.count, s[i] == "," { i += 1 }
            }
            i += 1
        }
        guard i < s.count, s[i] == " ", let value = Double(String(String.UnicodeScalarView(s[(i + 1)...]))) else {
            throw Malformed(description: line)
        }
        return Sample(name: name, labels: labels, value: value, line: line)
    }

    /// The one sample of `name` with exactly these labels.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        self.samples.first { $0.name == name && $0.labels == labels }?.value
    }

    /// Whether a sample of `name` carries (at least) these labels.
    func has(_ name: String, _ labels: [String: String]) -> Bool {
        self.samples.contains { sample in sample.name == name && labels.allSatisfy { k, v in sample.labels[k] == v } }
    }

    /// The sum of the samples of `name` that carry (at least) these labels.
    func sum(_ name: String, _ labels: [String: String]) -> Double {
        self.samples.filter { sample in sample.name == name && labels.allSatisfy { k, v in sample.labels[k] == v } }.reduce(0) { $0 + $1.value }
    }
}
