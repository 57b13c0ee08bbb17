import Prometheus
import Synchronization
import WharfClock
import WharfStorage
import WharfUpstream

/// A counter kept as an atomic, read by `/stats`; its Prometheus twin is brought up to date when
/// `/metrics` is scraped, so counting costs one relaxed atomic add on the hit path.
public final class StatCounter: Sendable {
    private let atomic = Atomic<Int>(0)
    private let prometheus: MirroredCounter

    init(_ metrics: MetricsRegistry, _ name: String, _ labels: [(String, String)] = [], help: String) {
        self.prometheus = MirroredCounter(metrics.registry.makeCounter(descriptor: metric(name, help), labels: labels))
        metrics.track(self)
    }

    public func add(_ n: Int = 1) { self.atomic.add(n, ordering: .relaxed) }

    public var value: Int { self.atomic.load(ordering: .relaxed) }

    fileprivate func syncPrometheus() { self.prometheus.sync(to: Int64(self.value)) }
}

/// The Prometheus registry and every ``StatCounter`` made in it, synced at scrape time.
final class MetricsRegistry: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let counters = Mutex<[StatCounter]>([])

    func track(_ counter: StatCounter) { self.counters.withLock { $0.append(counter) } }
    func syncCounters() { self.counters.withLock { $0 }.forEach { $0.syncPrometheus() } }
}

/// Everything Wharf counts about itself: requests, hits and misses, bytes, fills, upstream calls,
/// and the busiest repositories. Read by `/stats`, `/metrics` and the dashboard.
public final class MirrorStats: Sendable {
    public enum RequestKind: String, Sendable, CaseIterable { case manifest, blob, tags, referrers, base, status, other }

    private let metrics = MetricsRegistry()
    private var registry: PrometheusCollectorRegistry { self.metrics.registry }
    public let startedAt = ContinuousClock.now
    public let startedAtWall = WharfClock.system.wallSeconds()

    public let requests: [RequestKind: StatCounter]
    public let blobHits: StatCounter
    public let blobMisses: StatCounter
    public let manifestHits: StatCounter
    public let manifestMisses: StatCounter
    public let staleServes: StatCounter
    /// Expired tags answered at once from the cache within their stale-while-revalidate window.
    public let staleWhileRevalidateServes: StatCounter
    public let revalidations: StatCounter
    public let negativeHits: StatCounter
    public let bytesFromDisk: StatCounter
    public let bytesFromFills: StatCounter
    public let bytesFetched: StatCounter
    public let fillsStarted: StatCounter
    public let fillsCompleted: StatCounter
    public let fillsFailed: StatCounter
    /// Blobs streamed from the upstream to a client uncached, because the cache could not keep them (disk full).
    public let relays: StatCounter
    /// `Range` GETs of uncached blobs answered with a ranged upstream GET beside the fill.
    public let rangedRelays: StatCounter
    /// Body bytes of those answers.
    public let bytesFromRanges: StatCounter
    /// Fills stopped because no client followed them and they were below the throughput floor.
    public let fillsAbandoned: StatCounter
    public let digestMismatches: StatCounter
    public let followersJoined: StatCounter
    public let upstreamRequests: StatCounter
    public let upstreamErrors: StatCounter
    /// Digests refused through a repository they were never seen in (cross-repository gate).
    public let crossRepositoryRefusals: StatCounter
    /// Expired tags served stale because a new digest would have cost a pull of a budget in its reserve.
    public let budgetStaleServes: StatCounter
    /// Client requests refused by client authentication or pass-through authorization.
    public let authRefusals: StatCounter
    /// Referrers answers by where they came from: the upstream's API, the tag schema, or none (empty).
    public let referrersServed: [ReferrersSource: StatCounter]
    let requestDuration: [RequestKind: DurationHistogram]
    // Gauges refreshed when `/metrics` is scraped.
    private let fillsInFlightGauge: Gauge
    private let entriesGauges: [String: Gauge]
    private let upstreamUpGauge: Gauge
    private let budgetRefusalCounters = Mutex<[String: MirroredCounter]>([:])
    /// Keyed by upstream, fallback and kind.
    private let failoverCounters = Mutex<[[String]: MirroredCounter]>([:])
    private let diskUsedGauge: Gauge
    private let diskLimitGauge: Gauge
    private let evictedBlobs: MirroredCounter
    private let evictedBytes: MirroredCounter
    let fillDuration: DurationHistogram
    private let repositories = Mutex<[String: RepositoryUsage]>([:])
    static let maxTrackedRepositories = 10_000

    /// Bytes and pulls (manifest GETs) per repository.
    public struct RepositoryUsage: Sendable, Codable {
        public var bytes: Int = 0
        public var pulls: Int = 0
    }

    public init() {
        let r = self.metrics
        let registry = self.metrics.registry
        var requests: [RequestKind: StatCounter] = [:]
        var durations: [RequestKind: DurationHistogram] = [:]
        let buckets: [Duration] = [.microseconds(100), .milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100),
                                   .milliseconds(500), .seconds(2), .seconds(10), .seconds(60)]
        for kind in RequestKind.allCases {
            requests[kind] = StatCounter(r, "wharf_requests_total", [("kind", kind.rawValue)], help: "HTTP requests by endpoint kind")
            durations[kind] = registry.makeDurationHistogram(
                descriptor: metric("wharf_request_duration_seconds", "Request latency"), labels: [("kind", kind.rawValue)], buckets: buckets)
        }
        self.requests = requests
        self.requestDuration = durations
        self.blobHits = StatCounter(r, "wharf_cache_hits_total", [("kind", "blob")], help: "Requests answered from the cache")
        self.manifestHits = StatCounter(r, "wharf_cache_hits_total", [("kind", "manifest")], help: "Requests answered from the cache")
        self.blobMisses = StatCounter(r, "wharf_cache_misses_total", [("kind", "blob")], help: "Requests that needed the upstream")
        self.manifestMisses = StatCounter(r, "wharf_cache_misses_total", [("kind", "manifest")], help: "Requests that needed the upstream")
        self.staleServes = StatCounter(r, "wharf_stale_serves_total", help: "Tags served past their TTL because the upstream failed")
        self.staleWhileRevalidateServes = StatCounter(
            r, "wharf_stale_while_revalidate_serves_total", help: "Expired tags answered from the cache while a background revalidation runs")
        self.revalidations = StatCounter(r, "wharf_tag_revalidations_total", help: "Expired tags confirmed unchanged by an upstream HEAD")
        self.negativeHits = StatCounter(r, "wharf_negative_hits_total", help: "Requests answered from the not-found cache")
        self.bytesFromDisk = StatCounter(r, "wharf_served_bytes_total", [("source", "disk")], help: "Body bytes sent to clients")
        self.bytesFromFills = StatCounter(r, "wharf_served_bytes_total", [("source", "fill")], help: "Body bytes sent to clients")
        self.bytesFetched = StatCounter(r, "wharf_upstream_bytes_total", help: "Blob bytes downloaded from upstreams")
        self.fillsStarted = StatCounter(r, "wharf_fills_started_total", help: "Blob downloads started")
        self.fillsCompleted = StatCounter(r, "wharf_fills_completed_total", help: "Blob downloads verified and cached")
        self.fillsFailed = StatCounter(r, "wharf_fills_failed_total", help: "Blob downloads that failed or did not verify")
        self.fillsAbandoned = StatCounter(r, "wharf_fills_abandoned_total", help: "Fills stopped with no client following them, below the throughput floor")
        self.relays = StatCounter(r, "wharf_uncached_relays_total", help: "Blobs streamed to a client uncached because the cache could not keep them")
        self.rangedRelays = StatCounter(
            r, "wharf_ranged_relays_total", help: "Range GETs of uncached blobs answered by a ranged upstream GET (unverified, not stored)")
        self.bytesFromRanges = StatCounter(r, "wharf_served_bytes_total", [("source", "upstream-range")], help: "Body bytes sent to clients")
        self.digestMismatches = StatCounter(r, "wharf_digest_mismatches_total", help: "Upstream bodies whose digest did not match")
        self.followersJoined = StatCounter(r, "wharf_fill_followers_total", help: "Requests that joined a download in progress")
        self.upstreamRequests = StatCounter(r, "wharf_upstream_requests_total", help: "Manifest and blob requests sent upstream")
        self.upstreamErrors = StatCounter(r, "wharf_upstream_errors_total", help: "Upstream requests that failed (transport or 5xx)")
        self.crossRepositoryRefusals = StatCounter(
            r, "wharf_cross_repository_refusals_total", help: "Digests refused through a repository the upstream did not confirm")
        self.budgetStaleServes = StatCounter(
            r, "wharf_ratelimit_budget_stale_serves_total", help: "Expired tags served stale to keep a pull budget's reserve for uncached content")
        self.authRefusals = StatCounter(r, "wharf_auth_refusals_total", help: "Requests refused by client authentication or authorization")
        self.referrersServed = Dictionary(uniqueKeysWithValues: ReferrersSource.allCases.map {
            ($0, StatCounter(r, "wharf_referrers_served_total", [("source", $0.rawValue)], help: "Referrers answers by source (upstream API, tag schema, empty)"))
        })
        self.fillsInFlightGauge = registry.makeGauge(descriptor: metric("wharf_fills_in_flight", "Blob downloads in progress"))
        self.entriesGauges = Dictionary(uniqueKeysWithValues: ["blobs", "manifests", "tags"].map {
            ($0, registry.makeGauge(descriptor: metric("wharf_cache_entries", "Entries in the cache index"), labels: [("kind", $0)]))
        })
        self.upstreamUpGauge = registry.makeGauge(descriptor: metric("wharf_upstream_up", "1 if the last upstream request got an answer below 500"))
        self.diskUsedGauge = registry.makeGauge(descriptor: metric("wharf_disk_used_bytes", "Bytes of cached blobs (including ones being published)"))
        self.diskLimitGauge = registry.makeGauge(descriptor: metric("wharf_disk_limit_bytes", "Configured cache size bound (-1: unbounded)"))
        self.evictedBlobs = MirroredCounter(registry.makeCounter(descriptor: metric("wharf_evictions_total", "Blobs evicted (least recently used first)"), labels: [("reason", "lru")]))
        self.evictedBytes = MirroredCounter(registry.makeCounter(descriptor: metric("wharf_evicted_bytes_total", "Bytes evicted"), labels: [("reason", "lru")]))
        self.fillDuration = registry.makeDurationHistogram(
            descriptor: metric("wharf_fill_duration_seconds", "Time from upstream request to verified blob"),
            buckets: [.milliseconds(10), .milliseconds(100), .seconds(1), .seconds(10), .seconds(60), .seconds(600)])
    }

    public func request(_ kind: RequestKind, duration: Duration) {
        self.requests[kind]?.add()
        self.requestDuration[kind]?.record(duration)
    }

    public func fillFinished(after duration: Duration) { self.fillDuration.record(duration) }

    /// One upstream's pull budget for `/metrics`: the mirror's own identity (or, with pass-through
    /// clients only, the one with the least left), and the manifest `GET`s refused for a spent budget.
    public struct BudgetGauge: Sendable {
        public var upstream: String
        public var budget: RateLimitBudget?
        public var refusals: Int
    }

    /// Answers one fallback of one upstream gave in its place, for `/metrics`.
    public struct FailoverCounts: Sendable {
        public var upstream: String
        /// The fallback's `host[:port]`.
        public var fallback: String
        public var manifests: Int
        public var blobs: Int
        /// Tags resolved by the fallback while the upstream was unreachable (among `manifests`).
        public var unconfirmedTags: Int
    }

    /// Prometheus text exposition of every metric, with the gauges set from the given state.
    public func prometheusText(
        fillsInFlight: Int, entries: (blobs: Int, manifests: Int, tags: Int)?, upstreamUp: Bool, budgets: [BudgetGauge],
        failovers: [FailoverCounts] = [], diskUsed: Int64, diskLimit: Int64?, evictedBlobs: Int, evictedBytes: Int64
    ) -> [UInt8] {
        self.metrics.syncCounters()
        self.diskUsedGauge.set(to: Double(diskUsed))
        self.diskLimitGauge.set(to: Double(diskLimit ?? -1))
        self.evictedBlobs.sync(to: Int64(evictedBlobs))
        self.evictedBytes.sync(to: evictedBytes)
        self.fillsInFlightGauge.set(to: Double(fillsInFlight))
        if let entries {
            self.entriesGauges["blobs"]?.set(to: Double(entries.blobs))
            self.entriesGauges["manifests"]?.set(to: Double(entries.manifests))
            self.entriesGauges["tags"]?.set(to: Double(entries.tags))
        }
        self.upstreamUpGauge.set(to: upstreamUp ? 1 : 0)
        for b in budgets {
            let labels = [("upstream", b.upstream)]
            let gauges: [(String, String, Double)] = [
                ("wharf_upstream_ratelimit_remaining", "Pulls left of the upstream's rate limit (-1: no RateLimit headers seen)",
                 b.budget.map { Double($0.remaining) } ?? -1),
                ("wharf_upstream_ratelimit_limit", "The upstream's RateLimit-Limit (-1: none seen)", b.budget?.limit.map(Double.init) ?? -1),
                ("wharf_upstream_ratelimit_reserve", "Pulls kept for uncached content (at or under it, cached tags are not re-fetched)",
                 b.budget.map { Double($0.reserve) } ?? 0),
            ]
            for (name, help, value) in gauges { self.registry.makeGauge(descriptor: metric(name, help), labels: labels).set(to: value) }
            let refusals = self.budgetRefusalCounters.withLock { counters in
                if let c = counters[b.upstream] { return c }
                let c = MirroredCounter(self.registry.makeCounter(
                    descriptor: metric("wharf_ratelimit_budget_refusals_total", "Manifest GETs answered 429 for a spent pull budget, without asking"),
                    labels: labels))
                counters[b.upstream] = c
                return c
            }
            refusals.sync(to: Int64(b.refusals))
        }
        for f in failovers {
            let series: [(name: String, help: String, kind: String?, value: Int)] = [
                ("wharf_upstream_failovers_total", "Requests a fallback answered because its upstream was unreachable or refused", "manifest", f.manifests),
                ("wharf_upstream_failovers_total", "Requests a fallback answered because its upstream was unreachable or refused", "blob", f.blobs),
                ("wharf_upstream_unconfirmed_tags_total", "Tags a fallback resolved while the upstream was unreachable (served stale)", nil, f.unconfirmedTags),
            ]
            for s in series {
                var labels = [("upstream", f.upstream), ("fallback", f.fallback)]
                if let kind = s.kind { labels.append(("kind", kind)) }
                let counter = self.failoverCounters.withLock { counters in
                    let key = [s.name] + labels.map(\.1)
                    if let c = counters[key] { return c }
                    let c = MirroredCounter(self.registry.makeCounter(descriptor: metric(s.name, s.help), labels: labels))
                    counters[key] = c
                    return c
                }
                counter.sync(to: Int64(s.value))
            }
        }
        return self.registry.emitToBuffer()
    }

    /// Notes repository traffic for the top-repositories tables.
    public func repository(_ name: String, bytes: Int = 0, pull: Bool = false) {
        self.repositories.withLock { repos in
            guard repos[name] != nil || repos.count < Self.maxTrackedRepositories else { return }
            repos[name, default: RepositoryUsage()].bytes += bytes
            if pull { repos[name, default: RepositoryUsage()].pulls += 1 }
        }
    }

    public func topRepositories(limit: Int = 10) -> (byBytes: [(String, RepositoryUsage)], byPulls: [(String, RepositoryUsage)]) {
        let all = self.repositories.withLock { $0 }
        return (
            Array(all.sorted { ($0.value.bytes, $1.key) > ($1.value.bytes, $0.key) }.prefix(limit)),
            Array(all.sorted { ($0.value.pulls, $1.key) > ($1.value.pulls, $0.key) }.prefix(limit))
        )
    }
}

/// A Prometheus counter that follows a total kept elsewhere (it only ever moves forward).
final class MirroredCounter: Sendable {
    private let counter: Counter
    private let emitted = Mutex<Int64>(0)
    init(_ counter: Counter) { self.counter = counter }
    func sync(to total: Int64) {
        let delta = self.emitted.withLock { e -> Int64 in
            defer { e = max(e, total) }
            return total - e
        }
        if delta > 0 { self.counter.increment(by: delta) }
    }
}

private func metric(_ name: String, _ help: String) -> MetricNameDescriptor {
    MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
}
