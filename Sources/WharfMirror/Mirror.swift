import AsyncHTTPClient
import Logging
import OCIDistribution
import WharfStorage
import WharfUpstream

/// Everything behind the HTTP front: the cache on disk, its index, the fills, the manifest resolver
/// and the upstream(s).
public final class Mirror: Sendable {
    public let layout: CacheLayout
    public let index: CacheIndex
    public let store: BlobStore
    public let fills: BlobFills
    public let manifests: ManifestResolver
    public let upstream: UpstreamClient
    public let router: UpstreamRouter
    public let stats = MirrorStats()
    /// The size bound, the running total of cached bytes, and which fills are kept.
    public let budget: CacheBudget
    /// Digests being sent to clients (the blob endpoint marks them; the evictor spares them).
    public let serving = ServingRegistry()
    public let evictor: Evictor
    public let startupReconcile: StartupReconcile
    public let logger: Logger

    /// Opens (or creates) the cache under `dataDirectory` and removes leftovers of unfinished fills.
    /// `limits` bounds the cache (nil: unbounded). The index ↔ disk check runs later, in ``runMaintenance()``.
    public init(
        dataDirectory: String, upstream: UpstreamConfiguration, httpClient: HTTPClient, logger: Logger, limits: CacheLimits? = nil,
        pins: PinnedImages? = nil
    ) throws {
        self.layout = CacheLayout(root: dataDirectory)
        try self.layout.createDirectories()
        self.budget = CacheBudget(limits: limits, logger: logger)
        self.index = try CacheIndex(directory: self.layout.indexDirectory, budget: self.budget)
        self.store = BlobStore(layout: self.layout, budget: self.budget)
        let removed = self.store.removeLeftoverTempFiles()
        if removed > 0 { logger.notice("removed unfinished fills from a previous run", metadata: ["count": "\(removed)"]) }
        self.fills = BlobFills(store: self.store, index: self.index, stats: self.stats, logger: logger)
        self.manifests = ManifestResolver(index: self.index, stats: self.stats, logger: logger)
        self.upstream = UpstreamClient(configuration: upstream, httpClient: httpClient, logger: logger)
        let route = UpstreamRoute(client: self.upstream)
        self.router = UpstreamRouter(routes: [route], defaultRoute: route)
        self.evictor = Evictor(
            index: self.index, store: self.store, budget: self.budget, fills: self.fills, serving: self.serving,
            pins: pins, upstreamName: upstream.name, logger: logger)
        self.startupReconcile = StartupReconcile(index: self.index, store: self.store, fills: self.fills, serving: self.serving, logger: logger)
        self.logger = logger
    }

    /// The upstream for a request and the repository name to use there: by containerd's `ns`, a path
    /// prefix, or the default upstream (`alpine` → `library/alpine` on Docker Hub); 403 if policy denies it.
    public func route(_ name: RepositoryName, namespace: String?) throws(RegistryError) -> (upstream: UpstreamClient, repository: String) {
        let routed = try self.router.route(name, namespace: namespace)
        return (routed.client, routed.repository)
    }

    /// Background upkeep until cancelled: the index ↔ disk check once, eviction when over the high
    /// watermark, and batched last-access writes once a second. Start it once the server listens.
    /// When cancelled it gives fills in flight up to `fillDrain` to finish (so a blob a client already
    /// received is not lost to a clean shutdown), then writes the last access times.
    public func runMaintenance(fillDrain: Duration = .seconds(10)) async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.startupReconcile.run() }
            group.addTask { await self.evictor.run() }
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                do { try self.index.flushAccessTimes() } catch {
                    self.logger.error("flushing access times failed", metadata: ["error": "\(error)"])
                }
            }
        }
        let deadline = ContinuousClock.now + fillDrain
        await Task {  // not cancelled with this task, so its sleeps really wait
            while self.fills.inFlight > 0, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        }.value
        _ = try? self.index.flushAccessTimes()
    }
}
