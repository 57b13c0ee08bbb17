import Foundation
import Synchronization
import WharfMirror
import WharfStorage
import WharfUpstream

/// The `/stats` document: a consistent-enough snapshot of ``MirrorStats`` plus index and upstream state.
struct StatsSnapshot: Codable, Sendable {
    struct Cache: Codable, Sendable {
        var blobHits, blobMisses, manifestHits, manifestMisses, staleServes, revalidations, negativeHits: Int
        var hitRatioByRequests: Double
        var hitRatioByBytes: Double
    }
    struct Bytes: Codable, Sendable {
        var servedFromDisk, servedFromFills, fetchedFromUpstream, saved: Int
    }
    struct Fills: Codable, Sendable {
        var inFlight, started, completed, failed, digestMismatches, followersJoined: Int
    }
    struct Upstream: Codable, Sendable {
        var name, url: String
        var requests, errors: Int
        var health: UpstreamHealth
    }
    struct Evictions: Codable, Sendable {
        var count: Int
        var bytes: Int64
        var passes: Int
        /// Why blobs were removed: Wharf evicts least-recently-used blobs when use passes the high watermark.
        var reason: String
        /// Verified fills streamed to clients but not kept because they would not fit.
        var declinedFills: Int
        var declinedBytes: Int64
    }
    struct Disk: Codable, Sendable {
        var usedBytes: Int64
        var limitBytes: Int64?
        var highWatermarkBytes: Int64?
        var lowWatermarkBytes: Int64?
    }
    struct Entries: Codable, Sendable {
        var blobs, manifests, tags: Int
    }
    struct Repository: Codable, Sendable {
        var name: String
        var bytes, pulls: Int
    }

    var uptimeSeconds: Double
    var startedAt: UInt64
    var requests: [String: Int]
    var cache: Cache
    var bytes: Bytes
    var fills: Fills
    var upstreams: [Upstream]
    var evictions: Evictions
    var disk: Disk
    var entries: Entries
    /// False when the caller may not see repository names: the two lists below are then empty.
    var repositoryNamesShown: Bool
    var topRepositoriesByBytes: [Repository]
    var topRepositoriesByPulls: [Repository]

    init(mirror: Mirror, showNames: Bool) {
        let s = mirror.stats
        let uptime = ContinuousClock.now - s.startedAt
        self.uptimeSeconds = Double(uptime.components.seconds) + Double(uptime.components.attoseconds) / 1e18
        self.startedAt = s.startedAtWall
        self.requests = Dictionary(uniqueKeysWithValues: s.requests.map { ($0.key.rawValue, $0.value.value) })
        let hits = s.blobHits.value + s.manifestHits.value
        let lookups = hits + s.blobMisses.value + s.manifestMisses.value
        let disk = s.bytesFromDisk.value, fills = s.bytesFromFills.value
        self.cache = Cache(
            blobHits: s.blobHits.value, blobMisses: s.blobMisses.value, manifestHits: s.manifestHits.value,
            manifestMisses: s.manifestMisses.value, staleServes: s.staleServes.value,
            revalidations: s.revalidations.value, negativeHits: s.negativeHits.value,
            hitRatioByRequests: lookups == 0 ? 0 : Double(hits) / Double(lookups),
            hitRatioByBytes: disk + fills == 0 ? 0 : Double(disk) / Double(disk + fills))
        self.bytes = Bytes(
            servedFromDisk: disk, servedFromFills: fills, fetchedFromUpstream: s.bytesFetched.value,
            saved: max(0, disk + fills - s.bytesFetched.value))
        self.fills = Fills(
            inFlight: mirror.fills.inFlight, started: s.fillsStarted.value, completed: s.fillsCompleted.value,
            failed: s.fillsFailed.value, digestMismatches: s.digestMismatches.value, followersJoined: s.followersJoined.value)
        self.upstreams = mirror.upstreams.map { u in
            let (requests, errors) = u.requestCounts
            return Upstream(name: u.configuration.name, url: u.configuration.url, requests: requests, errors: errors, health: u.health)
        }
        let ev = mirror.evictor.counters, budget = mirror.budget
        self.evictions = Evictions(
            count: ev.evictedBlobs.load(ordering: .relaxed), bytes: ev.evictedBytes.load(ordering: .relaxed),
            passes: ev.passes.load(ordering: .relaxed), reason: "lru-high-watermark",
            declinedFills: budget.declinedFills.load(ordering: .relaxed), declinedBytes: budget.declinedBytes.load(ordering: .relaxed))
        self.disk = Disk(
            usedBytes: budget.occupiedBytes, limitBytes: budget.limits?.maxBytes,
            highWatermarkBytes: budget.limits?.highWatermarkBytes, lowWatermarkBytes: budget.limits?.lowWatermarkBytes)
        let c = (try? mirror.index.counts()) ?? (blobs: 0, manifests: 0, tags: 0)
        self.entries = Entries(blobs: c.blobs, manifests: c.manifests, tags: c.tags)
        self.repositoryNamesShown = showNames
        let top = showNames ? s.topRepositories() : (byBytes: [], byPulls: [])
        self.topRepositoriesByBytes = top.byBytes.map { Repository(name: $0.0, bytes: $0.1.bytes, pulls: $0.1.pulls) }
        self.topRepositoriesByPulls = top.byPulls.map { Repository(name: $0.0, bytes: $0.1.bytes, pulls: $0.1.pulls) }
    }
}

/// The human page at `/`: plain server-rendered HTML, no scripts.
enum Dashboard {
    static func render(_ s: StatsSnapshot) -> String {
        func esc(_ t: String) -> String {
            t.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
                .replacingOccurrences(of: "\"", with: "&quot;")
        }
        func bytes(_ n: Int) -> String { ByteCountFormatter.string(fromByteCount: Int64(n), countStyle: .binary) }
        func pct(_ r: Double) -> String { String(format: "%.1f%%", r * 100) }
        let repoRows = s.topRepositoriesByBytes.map { "<tr><td>\(esc($0.name))</td><td>\(bytes($0.bytes))</td><td>\($0.pulls)</td></tr>" }.joined()
        let repositories = s.repositoryNamesShown
            ? "<table><tr><th>Repository</th><th>Bytes served</th><th>Pulls</th></tr>\(repoRows)</table>"
            : #"<p>Repository names are shown to administrators only: <a href="/?signin">sign in</a>.</p>"#
        let upstreamRows = s.upstreams.map {
            "<tr><td>\(esc($0.name))</td><td>\(esc($0.url))</td><td>\($0.health.reachable.map { $0 ? "up" : "down" } ?? "unknown")</td><td>\($0.requests)</td><td>\($0.errors)</td><td>\(esc($0.health.rateLimitRemaining ?? "-"))</td></tr>"
        }.joined()
        return """
            <!doctype html><html><head><meta charset="utf-8"><title>Wharf</title>
            <style>body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:.3em .8em;text-align:left}</style>
            </head><body><h1>Wharf</h1>
            <table><tr><th>Hit ratio (requests)</th><td>\(pct(s.cache.hitRatioByRequests))</td></tr>
            <tr><th>Hit ratio (bytes)</th><td>\(pct(s.cache.hitRatioByBytes))</td></tr>
            <tr><th>Bytes saved</th><td>\(bytes(s.bytes.saved))</td></tr>
            <tr><th>Served from disk / from fills</th><td>\(bytes(s.bytes.servedFromDisk)) / \(bytes(s.bytes.servedFromFills))</td></tr>
            <tr><th>Fetched from upstream</th><td>\(bytes(s.bytes.fetchedFromUpstream))</td></tr>
            <tr><th>Disk used / limit</th><td>\(bytes(Int(s.disk.usedBytes))) / \(s.disk.limitBytes.map { bytes(Int($0)) } ?? "unbounded")</td></tr>
            <tr><th>Evictions</th><td>\(s.evictions.count) blobs, \(bytes(Int(s.evictions.bytes)))</td></tr>
            <tr><th>Cached entries</th><td>\(s.entries.blobs) blobs, \(s.entries.manifests) manifests, \(s.entries.tags) tags</td></tr>
            <tr><th>Fills in flight</th><td>\(s.fills.inFlight)</td></tr>
            <tr><th>Uptime</th><td>\(Int(s.uptimeSeconds)) s</td></tr></table>
            <h2>Upstreams</h2><table><tr><th>Name</th><th>URL</th><th>State</th><th>Requests</th><th>Errors</th><th>Rate limit left</th></tr>\(upstreamRows)</table>
            <h2>Top repositories</h2>\(repositories)
            <p><a href="/stats">/stats</a> · <a href="/metrics">/metrics</a></p></body></html>

            """
    }
}
