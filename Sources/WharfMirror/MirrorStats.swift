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
        self.prometheus = MirroredCounter(metrics.registry.makeCounter(descriptor: metrics.descriptor(name, help), labels: labels))
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
    /// The names of the families made in ``registry``.
    private let families = Mutex<Set<String>>([])

    func track(_ counter: StatCounter) { self.counters.withLock { $0.append(counter) } }
    func syncCounters() { self.counters.withLock { $0 }.forEach { $0.syncPrometheus() } }

    /// A family's descriptor, its name remembered for ``names``.
    func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        self.families.withLock { _ = $0.insert(name) }
        return metric(name, help)
    }

    var names: Set<String> { self.families.withLock { $0 } }
}

/// The class of an HTTP status, the `status_class` label of `wharf_requests_total`.
public enum StatusClass: String, Sendable, CaseIterable {
    case success = "2xx"
    case redirection = "3xx"
    case clientError = "4xx"
    case serverError = "5xx"
    /// No response was sent (the connection ended first).
    case none

    public init(status: Int) {
        switch status {
        case 200..<300: self = .success
        case 300..<400: self = .redirection
        case 400..<500: self = .clientError
        case 500..<600: self = .serverError
        default: self = .none
        }
    }

    var index: Int {
        switch self {
        case .success: 0
        case .redirection: 1
        case .clientError: 2
        case .serverError: 3
        case .none: 4
        }
    }
}

/// The requests of one route, a ``StatCounter`` per status class, all made up front (counting a
/// request is an array index and one relaxed atomic add).
public final class RequestCounters: Sendable {
    private let byClass: [StatCounter]

    init(_ metrics: MetricsRegistry, route: String) {
        self.byClass = StatusClass.allCases.map {
            StatCounter(metrics, "wharf_requests_total", [("route", route), ("status_class", $0.rawValue)], help: "HTTP requests by route and status class")
        }
    }

    func add(status: Int) { self.byClass[StatusClass(status: status).index].add() }

    /// All requests of the route.
    public var value: Int { self.byClass.reduce(0) { $0 + $1.value } }

    /// The requests of the route answered with a status of `statusClass`.
    public func value(_ statusClass: StatusClass) -> Int { self.byClass[statusClass.index].value }
}

/// Everything Wharf counts about itself: requests, hits and misses, bytes, fills, refusals,
/// and the busiest repositories. Read by `/stats`, `/metrics` and the dashboard.
public final class MirrorStats: Sendable {
    public enum RequestKind: String, Sendable, CaseIterable {
        case manifest, blob, tags, referrers, base, status, other

        /// The position in `allCases`: counting a request indexes arrays instead of hashing the raw value.
        var index: Int {
            switch self {
            case .manifest: 0
            case .blob: 1
            case .tags: 2
            case .referrers: 3
            case .base: 4
            case .status: 5
            case .other: 6
            }
        }
    }

    private let metrics = MetricsRegistry()
    private var registry: PrometheusCollectorRegistry { self.metrics.registry }
    public let startedAt = ContinuousClock.now
    public let startedAtWall = WharfClock.system.wallSeconds()

    /// Requests by route (the request kind) and status class.
    public var requests: [RequestKind: RequestCounters] {
        Dictionary(uniqueKeysWithValues: RequestKind.allCases.map { ($0, self.routes[$0.index].counters) })
    }
    public let blobHits: StatCounter
    public let blobMisses: StatCounter
    public let manifestHits: StatCounter
    public let manifestMisses: StatCounter
    public let staleServes: StatCounter
    /// Expired tags answered at once from the cache within their stale-while-revalidate window.
    public let staleWhileRevalidateServes: StatCounter
    public let revalidations: StatCounter
    public let negativeHits: StatCounter
    /// Blob hits answered from whole responses kept in memory (a subset of ``blobHits``).
    public let memoryHits: StatCounter
    public let bytesFromDisk: StatCounter
    public let bytesFromFills: StatCounter
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
    /// Digests refused through a repository they were never seen in (cross-repository gate).
    public let crossRepositoryRefusals: StatCounter
    /// Expired tags served stale because a new digest would have cost a pull of a budget in its reserve.
    public let budgetStaleServes: StatCounter
    /// Client requests refused by client authentication or pass-through authorization.
    public let authRefusals: StatCounter
    /// Referrers answers by where they came from: the upstream's API, the tag schema, or none (empty).
    public let referrersServed: [ReferrersSource: StatCounter]
    /// Each route's request counters and latency histogram, at its ``RequestKind/index``.
    private let routes: [(counters: RequestCounters, duration: DurationHistogram)]
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
        let buckets: [Duration] = [.microseconds(100), .milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100),
                                   .milliseconds(500), .seconds(2), .seconds(10), .seconds(60)]
        self.routes = RequestKind.allCases.sorted { $0.index < $1.index }.map { kind in
            (RequestCounters(r, route: kind.rawValue),
             registry.makeDurationHistogram(
                descriptor: r.descriptor("wharf_request_duration_seconds", "Request latency by route"), labels: [("route", kind.rawValue)],
                buckets: buckets))
        }
        self.blobHits = StatCounter(r, "wharf_cache_hits_total", [("kind", "blob")], help: "Requests answered from the cache")
        self.manifestHits = StatCounter(r, "wharf_cache_hits_total", [("kind", "manifest")], help: "Requests answered from the cache")
        self.blobMisses = StatCounter(r, "wharf_cache_misses_total", [("kind", "blob")], help: "Requests that needed the upstream")
        self.manifestMisses = StatCounter(r, "wharf_cache_misses_total", [("kind", "manifest")], help: "Requests that needed the upstream")
        self.staleServes = StatCounter(r, "wharf_stale_serves_total", help: "Tags served past their TTL because the upstream failed")
        self.staleWhileRevalidateServes = StatCounter(
            r, "wharf_stale_while_revalidate_serves_total", help: "Expired tags answered from the cache while a background revalidation runs")
        self.revalidations = StatCounter(r, "wharf_tag_revalidations_total", help: "Expired tags confirmed unchanged by an upstream HEAD")
        self.negativeHits = StatCounter(r, "wharf_negative_hits_total", help: "Requests answered from the not-found cache")
        self.memoryHits = StatCounter(r, "wharf_memory_hits_total", help: "Blob hits answered from responses kept in memory (part of the blob hits)")
        self.bytesFromDisk = StatCounter(r, "wharf_served_bytes_total", [("source", "disk")], help: "Body bytes sent to clients")
        self.bytesFromFills = StatCounter(r, "wharf_served_bytes_total", [("source", "fill")], help: "Body bytes sent to clients")
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
        self.crossRepositoryRefusals = StatCounter(
            r, "wharf_cross_repository_refusals_total", help: "Digests refused through a repository the upstream did not confirm")
        self.budgetStaleServes = StatCounter(
            r, "wharf_ratelimit_budget_stale_serves_total", help: "Expired tags served stale to keep a pull budget's reserve for uncached content")
        self.authRefusals = StatCounter(r, "wharf_auth_refusals_total", help: "Requests refused by client authentication or authorization")
        self.referrersServed = Dictionary(uniqueKeysWithValues: ReferrersSource.allCases.map {
            ($0, StatCounter(r, "wharf_referrers_served_total", [("source", $0.rawValue)], help: "Referrers answers by source (upstream API, tag schema, empty)"))
        })
        self.fillDuration = registry.makeDurationHistogram(
            descriptor: r.descriptor("wharf_fill_duration_seconds", "Time from upstream request to verified blob"),
            buckets: [.milliseconds(10), .milliseconds(100), .seconds(1), .seconds(10), .seconds(60), .seconds(600)])
    }

    /// Counts one request of `kind` answered with `status` (0: none sent) after `duration`.
    public func request(_ kind: RequestKind, status: Int, duration: Duration) {
        let route = self.routes[kind.index]
        route.counters.add(status: status)
        route.duration.record(duration)
    }

    public func fillFinished(after duration: Duration) { self.fillDuration.record(duration) }

    /// Every metric family `/metrics` may show: the counters and histograms kept here, and the
    /// families written from the `/stats` snapshot at scrape time (``ScrapeFamily``).
    public var metricNames: Set<String> { self.metrics.names.union(ScrapeFamily.allCases.map(\.rawValue)) }

    /// Prometheus text exposition of every metric: the counters and histograms kept here, then the
    /// families derived from `snapshot` (the `/stats` document, so both show the same figures) and the
    /// process's own (`process_…`, read from `/proc` now).
    func prometheusText(_ snapshot: StatsSnapshot) -> [UInt8] {
        self.metrics.syncCounters()
        var text = self.registry.emitToBuffer()
        var exposition = MetricsExposition()
        exposition.snapshot(snapshot)
        exposition.process(ProcessMetrics.read())
        text.append(contentsOf: exposition.text)
        return text
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
