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
    public let stats = MirrorStats()
    public let logger: Logger

    /// Opens (or creates) the cache under `dataDirectory` and removes leftovers of unfinished fills.
    public init(dataDirectory: String, upstream: UpstreamConfiguration, httpClient: HTTPClient, logger: Logger) throws {
        self.layout = CacheLayout(root: dataDirectory)
        try self.layout.createDirectories()
        self.index = try CacheIndex(directory: self.layout.indexDirectory)
        self.store = BlobStore(layout: self.layout)
        let removed = self.store.removeLeftoverTempFiles()
        if removed > 0 { logger.notice("removed unfinished fills from a previous run", metadata: ["count": "\(removed)"]) }
        self.fills = BlobFills(store: self.store, index: self.index, stats: self.stats, logger: logger)
        self.manifests = ManifestResolver(index: self.index, stats: self.stats, logger: logger)
        self.upstream = UpstreamClient(configuration: upstream, httpClient: httpClient, logger: logger)
        self.logger = logger
    }

    /// The upstream for a request and the repository name to use there (`alpine` → `library/alpine` on Docker Hub).
    public func route(_ name: RepositoryName) -> (upstream: UpstreamClient, repository: String) {
        let repo = self.upstream.configuration.isDockerHub ? name.dockerHubNormalized : name
        return (self.upstream, repo.value)
    }

    /// Background upkeep until cancelled: flush batched last-access times once a second.
    public func runMaintenance() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            do { try self.index.flushAccessTimes() } catch {
                self.logger.error("flushing access times failed", metadata: ["error": "\(error)"])
            }
        }
        try? self.index.flushAccessTimes()
    }
}
