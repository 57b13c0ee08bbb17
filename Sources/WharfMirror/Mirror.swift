import AsyncHTTPClient
import Logging
import OCIDistribution
import Synchronization
import WharfClock
import WharfLogging
import WharfStorage
import WharfUpstream

/// Everything behind the HTTP front: the cache on disk, its index, the fills, the manifest resolver
/// and the upstream(s). Outside this package it is a façade of questions — what to answer
/// (``ReadService``), how it is doing (``statsSnapshot(showNames:)``, ``prometheusText()``,
/// ``readinessProblem()``), upkeep (``runMaintenance(fillDrain:)``); its parts are package-internal,
/// for the command line's tools and the tests.
public final class Mirror: Sendable {
    package let layout: CacheLayout
    package let index: CacheIndex
    package let store: BlobStore
    package let fills: BlobFills
    package let manifests: ManifestResolver
    /// The default upstream (or the first one configured).
    package var upstream: UpstreamClient { self.upstreamChain.primary }
    /// The default upstream with its fallbacks.
    package var upstreamChain: UpstreamChain {
        let router = self.router
        return (router.defaultRoute ?? router.routes[0]).chain
    }
    /// Every configured upstream, in configuration order (without their fallbacks).
    package var upstreams: [UpstreamClient] { self.router.routes.map(\.client) }
    /// Every configured upstream with its fallbacks, in configuration order.
    package var chains: [UpstreamChain] { self.router.routes.map(\.chain) }
    /// The routes as configured now (``reconfigure(upstreams:)`` replaces them on SIGHUP).
    package var router: UpstreamRouter { self.routing.withLock { $0 } }
    let routing: Mutex<UpstreamRouter>
    /// Each upstream's ``reloadKey(_:)`` as configured now.
    let reloadKeys: Mutex<[(String, String)]>
    let httpClients: UpstreamHTTPClients
    let clock: WharfClock
    /// Cross-repository access check for digests (links, else an upstream HEAD).
    package let linkGate: RepositoryLinkGate
    public let stats = MirrorStats()
    /// Upstream look-ups per client address (uncached requests).
    package let lookups = UpstreamLookupLimiter()
    /// Blob `HEAD`s the upstream answered 404, per (upstream, repository, digest), for a short time.
    package let blobHeadMisses = NegativeCache(ttl: .seconds(10))
    /// Upstreams seen without a referrers API (their referrers come from the tag schema).
    let referrersAPI = ReferrersAPIMemory()
    /// The size bound, the running total of cached bytes, and which fills are kept.
    package let budget: CacheBudget
    /// Digests being sent to clients (the blob endpoint marks them; the evictor spares them).
    package let serving = ServingRegistry()
    package let evictor: Evictor
    /// Wakes the warm service for a run now (the admin API's `POST /admin/warm`).
    public let warmTrigger = WarmTrigger()
    /// Pinned images, configured and pinned at run time.
    public let pins: PinSet
    /// What the cache holds, for the cache browser.
    public let catalog: CacheCatalog
    /// The last hour of counters for the dashboard's charts, sampled every ``historyInterval``.
    public let history: Mutex<MetricsHistory>
    public let historyInterval: Duration
    package let startupReconcile: StartupReconcile
    /// Webhooks (disabled without endpoints).
    package let notifier: Notifier
    public let logger: Logger

    /// Opens (or creates) the cache under `dataDirectory` and removes leftovers of unfinished fills.
    /// `limits` bounds the cache (nil: unbounded). The index ↔ disk check runs later, in ``runMaintenance()``.
    public init(
        dataDirectory: String, upstreams: [MirrorUpstream], httpClients: UpstreamHTTPClients, logger: Logger, limits: CacheLimits? = nil,
        notifier: Notifier? = nil, clock: WharfClock = .system, historyInterval: Duration = .seconds(10)
    ) throws {
        precondition(!upstreams.isEmpty, "a mirror needs at least one upstream")
        let notifier = notifier ?? .disabled(logger: logger)
        self.notifier = notifier
        self.layout = CacheLayout(root: dataDirectory)
        try self.layout.createDirectories()
        self.budget = CacheBudget(limits: limits, logger: logger)
        self.index = try CacheIndex(directory: self.layout.indexDirectory, budget: self.budget, clock: clock)
        self.store = BlobStore(layout: self.layout, budget: self.budget)
        let removed = self.store.removeLeftoverTempFiles()
        if removed > 0 { logger.notice("removed unfinished fills from a previous run", metadata: ["count": "\(removed)"]) }
        self.fills = BlobFills(store: self.store, index: self.index, stats: self.stats, notifier: notifier, logger: logger)
        self.linkGate = RepositoryLinkGate(index: self.index, stats: self.stats, logger: logger)
        self.manifests = ManifestResolver(index: self.index, stats: self.stats, gate: self.linkGate, logger: logger)
        self.httpClients = httpClients
        self.clock = clock
        let (router, pins) = try Self.routes(upstreams, reusing: [:], httpClients: httpClients, notifier: notifier, logger: logger, clock: clock)
        self.routing = Mutex(router)
        self.reloadKeys = Mutex(upstreams.map { ($0.configuration.name, Self.reloadKey($0)) })
        let pinSet = PinSet(
            configured: pins, dockerHub: Dictionary(upstreams.map { ($0.configuration.name, $0.configuration.isDockerHub) }, uniquingKeysWith: { a, _ in a }),
            path: self.layout.root + "/pins.json")
        self.pins = pinSet
        self.evictor = Evictor(
            index: self.index, store: self.store, budget: self.budget, fills: self.fills, serving: self.serving, pins: pinSet, notifier: notifier,
            logger: logger)
        self.catalog = CacheCatalog(index: self.index, pins: pinSet)
        self.historyInterval = historyInterval
        let perHour = Int((Duration.seconds(3600) / max(historyInterval, .milliseconds(100))).rounded(.up))
        self.history = Mutex(MetricsHistory(capacity: max(2, min(perHour, 36_000) + 1)))
        self.startupReconcile = StartupReconcile(index: self.index, store: self.store, fills: self.fills, serving: self.serving, logger: logger)
        self.logger = logger
    }

    /// A mirror of one upstream, which serves every request.
    public convenience init(
        dataDirectory: String, upstream: UpstreamConfiguration, httpClients: UpstreamHTTPClients, logger: Logger, limits: CacheLimits? = nil,
        pins: [String] = []
    ) throws {
        try self.init(
            dataDirectory: dataDirectory, upstreams: [MirrorUpstream(configuration: upstream, pins: pins, isDefault: true)],
            httpClients: httpClients, logger: logger, limits: limits)
    }

    /// The upstream for a request and the repository name to use there: by containerd's `ns`, a path
    /// prefix, or the default upstream (`alpine` → `library/alpine` on Docker Hub); 403 if policy denies it.
    public func route(_ name: RepositoryName, namespace: String?) throws(RegistryError) -> RoutedRequest {
        try self.router.route(name, namespace: namespace)
    }

    /// Adds the counters as they are now to ``history``.
    package func sampleHistory() {
        let s = self.stats
        let latency = self.upstreams.reduce((0, 0)) { ($0.0 + $1.latencyTotals.answers, $0.1 + $1.latencyTotals.nanoseconds) }
        let sample = MetricsHistory.Sample(
            time: self.index.clock.wallTime(), requests: s.requests.values.reduce(0) { $0 + $1.value },
            hits: s.blobHits.value + s.manifestHits.value, misses: s.blobMisses.value + s.manifestMisses.value,
            bytesFromDisk: s.bytesFromDisk.value, bytesFromFills: s.bytesFromFills.value, bytesFromRanges: s.bytesFromRanges.value,
            bytesFetched: self.chains.reduce(0) { $0 + $1.primary.bytesReceived + $1.fallbacks.reduce(0) { $0 + $1.client.bytesReceived } }, fillsInFlight: self.fills.inFlight, upstreamAnswers: latency.0, upstreamLatencyNanoseconds: latency.1)
        self.history.withLock { $0.record(sample) }
    }

    /// Background upkeep until cancelled: the fills' run loop, the index ↔ disk check once, eviction
    /// when over the high watermark, and batched last-access writes once a second. Start it once the
    /// server listens. When cancelled it stops starting fills and gives those in flight up to
    /// `fillDrain` to finish (so a blob a client already received is not lost to a clean shutdown),
    /// cancels the rest, then writes the last access times.
    public func runMaintenance(fillDrain: Duration = .seconds(10)) async {
        // The fills' task group runs in a task this one's cancellation does not reach: shutdown
        // must let fills finish within `fillDrain`, not cancel them with the rest. Awaited below.
        let fills = Task { await self.fills.run() }
        await withDiscardingTaskGroup { group in
            group.addTask { await self.startupReconcile.run() }
            group.addTask { await self.evictor.run() }
            group.addTask { await self.notifier.run() }
            group.addTask { await self.manifests.revalidations.run() }
            group.addTask {
                while !Task.isCancelled {
                    self.sampleHistory()
                    try? await Task.sleep(for: self.historyInterval)
                }
            }
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                do { try self.index.flushAccessTimes() } catch {
                    self.logger.error("flushing access times failed", metadata: ["error": "\(error)"])
                }
            }
        }
        self.fills.stop(drain: fillDrain)
        await fills.value
        _ = try? self.index.flushAccessTimes()
    }
}
