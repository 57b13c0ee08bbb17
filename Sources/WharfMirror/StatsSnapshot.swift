import Foundation
import Synchronization
import WharfStorage
import WharfText
import WharfUpstream
import WharfText

/// The `/stats` document: a consistent-enough snapshot of ``MirrorStats`` plus index and upstream state.
/// `/metrics` writes its gauges and upstream figures from one too (``MetricsExposition``), and its
/// counters read the same atomics, so the two agree.
public struct StatsSnapshot: Codable, Sendable {
    /// Which Wharf this is (`wharf_build_info`).
    public struct Build: Codable, Sendable {
        public var version, commit: String
    }
    public struct Cache: Codable, Sendable {
        public var blobHits, blobMisses, manifestHits, manifestMisses, staleServes, revalidations, negativeHits: Int
        /// Blob hits answered from responses kept in memory (part of `blobHits`).
        public var memoryHits: Int
        /// Expired tags answered at once within their stale-while-revalidate window.
        public var staleWhileRevalidateServes: Int
        /// Expired tags served stale to keep a pull budget's reserve for content nobody has.
        public var budgetStaleServes: Int
        public var hitRatioByRequests: Double
        public var hitRatioByBytes: Double
    }
    public struct Bytes: Codable, Sendable {
        /// `fetchedFromUpstream`: the sum of the upstreams' `bytes`.
        public var servedFromDisk, servedFromFills, fetchedFromUpstream, saved: Int
        /// Ranges of uncached blobs passed through from ranged upstream GETs (also in `fetchedFromUpstream`).
        public var servedFromUpstreamRanges: Int
    }
    public struct Fills: Codable, Sendable {
        public var inFlight, started, completed, failed, digestMismatches, followersJoined: Int
        /// `Range` GETs answered by a ranged upstream GET beside the blob's fill.
        public var rangedRelays: Int
    }
    public struct Upstream: Codable, Sendable {
        public var name, url: String
        /// HTTP requests sent (token fetches, probes and redirects included) and how many failed (transport or 5xx).
        public var requests, errors: Int
        /// Blob body bytes downloaded from it.
        public var bytes: Int
        public var health: UpstreamHealth
        /// Docker Hub style pull budgets per identity, from the upstream's `RateLimit-*` headers.
        public var rateLimitBudgets: [RateLimitBudget]
        /// Manifest `GET`s answered 429 because the budget was spent, without asking the upstream.
        public var budgetRefusals: Int
        /// The upstream's fallbacks, in the order they are asked.
        public var fallbacks: [Fallback]
    }
    /// A fallback of an upstream: its own requests and health, and the answers taken from it.
    public struct Fallback: Codable, Sendable {
        /// `host[:port]` (the `fallback` label of `wharf_upstream_failovers_total`).
        public var name: String
        public var url: String
        public var requests, errors: Int
        /// Blob body bytes downloaded from it.
        public var bytes: Int
        public var health: UpstreamHealth
        public var failovers: Failovers
    }
    /// Answers a fallback gave because its upstream could not.
    public struct Failovers: Codable, Sendable {
        /// Manifests, by digest and by tag.
        public var manifests: Int
        /// Blob `GET`s and `HEAD`s.
        public var blobs: Int
        /// Tags among the manifests: resolved while the upstream was unreachable, served stale.
        public var unconfirmedTags: Int
    }
    /// Referrers answers by source.
    public struct Referrers: Codable, Sendable {
        /// From the upstream's referrers API.
        public var upstream: Int
        /// Built from the referrers-tag-schema index (`sha256-<hex>`).
        public var tagSchema: Int
        /// No API and no fallback tag: an empty index.
        public var empty: Int
    }
    public struct Evictions: Codable, Sendable {
        public var count: Int
        public var bytes: Int64
        public var passes: Int
        /// Why blobs were removed: Wharf evicts least-recently-used blobs when use passes the high watermark.
        public var reason: String
        /// Verified fills streamed to clients but not kept because they would not fit.
        public var declinedFills: Int
        public var declinedBytes: Int64
    }
    public struct Disk: Codable, Sendable {
        public var usedBytes: Int64
        public var limitBytes: Int64?
        public var highWatermarkBytes: Int64?
        public var lowWatermarkBytes: Int64?
    }
    public struct Entries: Codable, Sendable {
        public var blobs, manifests, tags: Int
    }
    public struct Repository: Codable, Sendable {
        public var name: String
        public var bytes, pulls: Int
    }

    /// Wharf's release (`0.1.0`) and the commit it was built from (`unknown` when the build did not say).
    public var version: String
    public var commit: String
    public var build: Build
    public var uptimeSeconds: Double
    public var startedAt: UInt64
    /// Requests by route (`blob`, `manifest`, `tags`, `referrers`, `base`, `status`, `other`).
    public var requests: [String: Int]
    /// Requests by the class of their status (`2xx` … `5xx`, `none` when no response was sent).
    public var requestsByStatus: [String: Int]
    public var cache: Cache
    public var bytes: Bytes
    public var fills: Fills
    public var upstreams: [Upstream]
    public var referrers: Referrers
    public var evictions: Evictions
    public var disk: Disk
    public var entries: Entries
    /// False when the caller may not see repository names: the two lists below are then empty.
    public var repositoryNamesShown: Bool
    public var topRepositoriesByBytes: [Repository]
    public var topRepositoriesByPulls: [Repository]

    public init(mirror: Mirror, showNames: Bool) {
        let s = mirror.stats
        self.build = Build(version: WharfVersion.version, commit: WharfVersion.commit)
        let uptime = ContinuousClock.now - s.startedAt
        self.version = WharfVersion.version
        self.commit = WharfVersion.commit
        self.uptimeSeconds = Double(uptime.components.seconds) + Double(uptime.components.attoseconds) / 1e18
        self.startedAt = s.startedAtWall
        self.requests = Dictionary(uniqueKeysWithValues: s.requests.map { ($0.key.rawValue, $0.value.value) })
        self.requestsByStatus = Dictionary(uniqueKeysWithValues: StatusClass.allCases.map { c in
            (c.rawValue, s.requests.values.reduce(0) { $0 + $1.value(c) })
        })
        let hits = s.blobHits.value + s.manifestHits.value
        let lookups = hits + s.blobMisses.value + s.manifestMisses.value
        let disk = s.bytesFromDisk.value, fills = s.bytesFromFills.value, ranges = s.bytesFromRanges.value
        self.upstreams = mirror.chains.map { chain in
            let u = chain.primary
            let (requests, errors) = u.requestCounts
            let fallbacks = chain.fallbacks.map { f in
                let (requests, errors) = f.client.requestCounts
                let counts = f.failovers
                return Fallback(
                    name: f.label, url: f.client.configuration.url, requests: requests, errors: errors, bytes: f.client.bytesReceived,
                    health: f.client.health, failovers: Failovers(manifests: counts.manifests, blobs: counts.blobs, unconfirmedTags: counts.tags))
            }
            return Upstream(
                name: u.configuration.name, url: u.configuration.url, requests: requests, errors: errors, bytes: u.bytesReceived, health: u.health,
                rateLimitBudgets: u.rateLimitBudgets, budgetRefusals: u.budgetRefusals, fallbacks: fallbacks)
        }
        let fetched = self.upstreams.reduce(0) { $0 + $1.bytes + $1.fallbacks.reduce(0) { $0 + $1.bytes } }
        self.cache = Cache(
            blobHits: s.blobHits.value, blobMisses: s.blobMisses.value, manifestHits: s.manifestHits.value,
            manifestMisses: s.manifestMisses.value, staleServes: s.staleServes.value,
            revalidations: s.revalidations.value, negativeHits: s.negativeHits.value, memoryHits: s.memoryHits.value,
            staleWhileRevalidateServes: s.staleWhileRevalidateServes.value, budgetStaleServes: s.budgetStaleServes.value,
            hitRatioByRequests: lookups == 0 ? 0 : Double(hits) / Double(lookups),
            hitRatioByBytes: disk + fills + ranges == 0 ? 0 : Double(disk) / Double(disk + fills + ranges))
        self.bytes = Bytes(
            servedFromDisk: disk, servedFromFills: fills, fetchedFromUpstream: fetched,
            saved: max(0, disk + fills + ranges - fetched), servedFromUpstreamRanges: ranges)
        self.fills = Fills(
            inFlight: mirror.fills.inFlight, started: s.fillsStarted.value, completed: s.fillsCompleted.value,
            failed: s.fillsFailed.value, digestMismatches: s.digestMismatches.value, followersJoined: s.followersJoined.value,
            rangedRelays: s.rangedRelays.value)
        let served = { (source: ReferrersSource) in s.referrersServed[source]?.value ?? 0 }
        self.referrers = Referrers(upstream: served(.upstream), tagSchema: served(.tagSchema), empty: served(.empty))
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

extension StatsSnapshot.Fallback {
    /// `up`, `down`, or `unknown` before the first request.
    public var state: String { self.health.reachable.map { $0 ? "up" : "down" } ?? "unknown" }
    /// The last rate-limit remaining the fallback reported.
    public var rateLimitRemaining: String? { self.health.rateLimitRemaining }
}

extension StatsSnapshot.Upstream {
    /// `up`, `down`, or `unknown` before the first request.
    public var state: String { self.health.reachable.map { $0 ? "up" : "down" } ?? "unknown" }
    /// The last rate-limit remaining the upstream reported.
    public var rateLimitRemaining: String? { self.health.rateLimitRemaining }
    /// Wall-clock seconds since which ``state`` holds.
    public var stateSince: UInt64? { self.health.stateSince }
    public var lastError: String? { self.health.lastError }
    public var lastErrorAt: UInt64? { self.health.lastErrorAt }
    /// The most severe circuit state: `closed`, `open` or `half-open`.
    public var circuit: String { self.health.circuit.rawValue }

    /// The mirror's own pull budget (or the first identity's), as the dashboard shows it.
    public var budgetText: String? {
        guard let b = self.rateLimitBudgets.first(where: { $0.identity == "mirror" }) ?? self.rateLimitBudgets.first else { return nil }
        let hours = b.windowSeconds % 3600 == 0 ? "\(b.windowSeconds / 3600) h" : "\(b.windowSeconds) s"
        return "\(b.remaining)\(b.limit.map { " of \($0)" } ?? "") per \(hours)" + (b.state == "normal" ? "" : " (\(b.state))")
    }
}
