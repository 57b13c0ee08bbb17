import OCIDistribution
import WharfUpstream

/// One upstream registry as the mirror serves it: where it is, which requests reach it, what may be
/// pulled from it, and which of its images are pinned.
public struct MirrorUpstream: Sendable {
    public var configuration: UpstreamConfiguration
    /// containerd `ns` values routed here (the upstream's own host is always included).
    public var namespaces: [String]
    /// `/v2/<prefix>/<repo>/…` routes here (podman/skopeo mirrors, Docker ≥ 25 path mirrors).
    public var pathPrefix: String?
    public var policy: RepositoryPolicy
    /// `REPO[:TAG]` or `REPO@DIGEST`: cached blobs of these images are never evicted.
    public var pins: [String]
    /// Serves requests that match no `ns` and no path prefix.
    public var isDefault: Bool
    /// Other registries serving the same content, asked in order when this one is unreachable or
    /// refuses (see ``FailoverPolicy``); they inherit everything but URL, credentials and token realms.
    public var fallbacks: [UpstreamFallback]

    public init(
        configuration: UpstreamConfiguration, namespaces: [String] = [], pathPrefix: String? = nil,
        policy: RepositoryPolicy = RepositoryPolicy(), pins: [String] = [], isDefault: Bool = false, fallbacks: [UpstreamFallback] = []
    ) {
        self.configuration = configuration
        self.namespaces = namespaces
        self.pathPrefix = pathPrefix
        self.policy = policy
        self.pins = pins
        self.isDefault = isDefault
        self.fallbacks = fallbacks
    }
}
