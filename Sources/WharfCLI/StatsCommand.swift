import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import WharfText

/// `wharf stats`: a running instance's `/stats`, as a readable table.
struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Print a running Wharf's statistics.")

    @Option(help: "Base URL of the running instance, http(s)://HOST:PORT (HOST:PORT means http://).")
    var url = CommandHTTPClient.defaultURL

    @Flag(help: "Print the raw JSON instead of a table.")
    var json = false

    func validate() throws {
        _ = try CommandHTTPClient.baseURL(self.url)
    }

    func run() async throws {
        let base = try CommandHTTPClient.baseURL(self.url)
        let (status, body) = try await CommandHTTPClient.run { client in
            do {
                let response = try await client.execute(HTTPClientRequest(url: base + "/stats"), timeout: .seconds(10))
                let body = try await response.body.collect(upTo: 16 << 20)
                return (response.status, body)  // built after the await: see Warmer.warm(_:from:limiter:)
            } catch {
                throw CommandHTTPClient.unreachable(base, error)
            }
        }
        guard status == .ok else { throw CommandError("\(base)/stats answered HTTP \(status.code), not a Wharf's statistics; check --url") }
        let data = Data(body.readableBytesView)
        if self.json {
            print(String(decoding: data, as: UTF8.self))
            return
        }
        guard let stats = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CommandError("\(base)/stats did not return a JSON object; is it a Wharf? Check --url")
        }
        print(StatsTable.render(stats))
    }
}

/// Formats the `/stats` document for a terminal.
enum StatsTable {
    static func render(_ s: [String: Any]) -> String {
        func dict(_ k: String) -> [String: Any] { s[k] as? [String: Any] ?? [:] }
        func int(_ d: [String: Any], _ k: String) -> Int { d[k] as? Int ?? 0 }
        func bytes(_ n: Int) -> String { ByteCount.string(n) }
        func pct(_ v: Any?) -> String { String(format: "%.1f%%", (v as? Double ?? 0) * 100) }
        let cache = dict("cache"), b = dict("bytes"), fills = dict("fills"), entries = dict("entries")
        var rows: [(String, String)] = [
            ("version", (s["version"] as? String).map { "\($0) (commit \(s["commit"] as? String ?? "unknown"))" } ?? "unknown (older than 0.1.0)"),
            ("uptime", "\(Int(s["uptimeSeconds"] as? Double ?? 0)) s"),
            ("hit ratio (requests)", pct(cache["hitRatioByRequests"])),
            ("hit ratio (bytes)", pct(cache["hitRatioByBytes"])),
            ("blob hits / misses", "\(int(cache, "blobHits")) / \(int(cache, "blobMisses"))"),
            ("manifest hits / misses", "\(int(cache, "manifestHits")) / \(int(cache, "manifestMisses"))"),
            ("stale serves", "\(int(cache, "staleServes"))"),
            ("served from disk", bytes(int(b, "servedFromDisk"))),
            ("served from fills", bytes(int(b, "servedFromFills"))),
            ("fetched from upstream", bytes(int(b, "fetchedFromUpstream"))),
            ("bytes saved", bytes(int(b, "saved"))),
            ("fills in flight / done / failed", "\(int(fills, "inFlight")) / \(int(fills, "completed")) / \(int(fills, "failed"))"),
            ("followers joined", "\(int(fills, "followersJoined"))"),
            ("entries", "\(int(entries, "blobs")) blobs, \(int(entries, "manifests")) manifests, \(int(entries, "tags")) tags"),
            ("disk used / limit", "\(bytes(int(dict("disk"), "usedBytes"))) / \(dict("disk")["limitBytes"].flatMap { $0 as? Int }.map(bytes) ?? "unbounded")"),
            ("evictions", "\(int(dict("evictions"), "count")) blobs, \(bytes(int(dict("evictions"), "bytes")))"),
        ]
        for u in s["upstreams"] as? [[String: Any]] ?? [] {
            let h = u["health"] as? [String: Any] ?? [:]
            let state = (h["reachable"] as? Bool).map { $0 ? "up" : "down" } ?? "unknown"
            rows.append(("upstream \(u["name"] as? String ?? "?")", "\(state), \(int(u, "requests")) requests, \(int(u, "errors")) errors, rate limit left \(h["rateLimitRemaining"] as? String ?? "-")"))
            for f in u["fallbacks"] as? [[String: Any]] ?? [] {
                let fh = f["health"] as? [String: Any] ?? [:]
                let fstate = (fh["reachable"] as? Bool).map { $0 ? "up" : "down" } ?? "unknown"
                let served = f["failovers"] as? [String: Any] ?? [:]
                rows.append((
                    "  fallback \(f["name"] as? String ?? "?")",
                    "\(fstate), \(int(f, "requests")) requests, \(int(f, "errors")) errors, answered \(int(served, "manifests")) manifests (\(int(served, "unconfirmedTags")) tags) and \(int(served, "blobs")) blobs"
                ))
            }
        }
        for r in (s["topRepositoriesByBytes"] as? [[String: Any]] ?? []).prefix(5) {
            rows.append(("repo \(r["name"] as? String ?? "?")", "\(bytes(int(r, "bytes"))), \(int(r, "pulls")) pulls"))
        }
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
    }
}
