import Logging
import OCIDistribution
import WharfStorage
import WharfUpstream

/// Whose credentials a request's upstream requests carry: nil for the mirror's own (open and
/// htpasswd modes), a client's in pass-through mode. Set by client authentication.
public typealias ClientIdentity = UpstreamIdentity

/// The one place a pull is decided: "what is the answer to this blob or manifest request for this
/// client?" — routing, repository policy, pull authorization, the repository-link gate, the
/// not-found cache, per-client look-up budgets, hit / join-or-start-fill / relay / upstream HEAD.
///
/// Both request paths ask it: the event loop's hit path through the synchronous ``cachedBlob(_:_:files:)``
/// and ``cachedManifest(_:_:)`` (cache hits only, nil otherwise), the async side through the async
/// variants. The HTTP layer only renders the answers and hands back a ``RequestOutcome``.
public struct ReadService: Sendable {
    /// Pass-through mode's check that the upstream grants this client the repository (a no-op otherwise).
    public typealias PullAuthorizer = @Sendable (UpstreamIdentity, UpstreamClient, String) async throws(RegistryError) -> Void

    let mirror: Mirror
    /// The mirror's counters (the hit path counts what it answers from memory).
    public var stats: MirrorStats { self.mirror.stats }
    private let authorize: PullAuthorizer
    /// Where both request paths record how each request ended.
    public let outcomes: OutcomeRecorder

    public init(mirror: Mirror, logger: Logger, authorizePull: @escaping PullAuthorizer) {
        self.mirror = mirror
        self.authorize = authorizePull
        self.outcomes = OutcomeRecorder(stats: mirror.stats, logger: logger)
    }

    /// Blobs up to this size go out read into the response buffer on the hit path (head and body in
    /// one write), through the event loop's open-file cache; bigger ones get their own descriptor.
    public static let inlineBodyLimit: Int64 = 64 << 10

    // MARK: Routing

    /// The upstream and repository for `name` that this client may read (403/404/401 otherwise).
    public func route(_ name: RepositoryName, namespace: String?, identity: ClientIdentity?) async throws(RegistryError) -> RoutedRequest {
        let routed = try self.mirror.route(name, namespace: namespace)
        do {
            try await self.authorize(identity ?? .mirror, routed.client, routed.repository)
        } catch {
            self.mirror.stats.authRefusals.add()
            throw error
        }
        return routed
    }

    /// Routing without pull authorization, for the synchronous hit path (open access only).
    public func routeOpen(_ name: RepositoryName, namespace: String?) -> RoutedRequest? {
        try? self.mirror.route(name, namespace: namespace)
    }

    /// Counts a refusal by client authentication.
    public func noteAuthRefusal() { self.mirror.stats.authRefusals.add() }

    // MARK: Manifests

    /// A manifest answered from the cache without any upstream request (a linked manifest by
    /// digest, a tag within its TTL); nil when the answer needs the async side.
    public func cachedManifest(_ query: ManifestQuery, _ routed: RoutedRequest) -> ManifestAnswer? {
        let manifests = self.mirror.manifests
        let found: StoredManifest?
        switch query.reference {
        case .digest(let d): found = manifests.cachedLinked(d, upstream: routed.client, repository: routed.repository)
        case .tag(let t): found = manifests.freshTag(upstream: routed.client, repository: routed.repository, tag: t.value, accept: query.accept)
        }
        guard let found else { return nil }
        self.notePull(query, routed, found.digest)
        return ManifestAnswer(manifest: found, stale: false, fromCache: true)
    }

    /// The manifest: from the cache, revalidated, fetched, or stale when the upstream fails.
    public func manifest(_ query: ManifestQuery, _ routed: RoutedRequest) async throws(RegistryError) -> ManifestAnswer {
        let manifests = self.mirror.manifests
        if !manifests.isCachedAnswer(upstream: routed.client, repository: routed.repository, reference: query.reference, accept: query.accept) {
            try self.mirror.lookups.charge(query.client)
        }
        let answer = try await manifests.resolve(
            upstream: routed.chain, repository: routed.repository, reference: query.reference, accept: query.accept,
            identity: query.identity ?? .mirror)
        self.notePull(query, routed, answer.manifest.digest)
        return answer
    }

    private func notePull(_ query: ManifestQuery, _ routed: RoutedRequest, _ digest: Digest) {
        guard !query.isHead, case .tag(let t) = query.reference else { return }
        self.mirror.notifier.emit(.tagPulled(
            upstream: routed.client.configuration.name, repository: routed.repository, tag: t.value, digest: digest.description))
    }
}

/// A `GET`/`HEAD` of `/v2/<name>/manifests/<reference>`.
public struct ManifestQuery: Sendable {
    public var reference: Reference
    public var accept: AcceptSet
    public var isHead: Bool
    public var identity: ClientIdentity?
    /// The client's address: what per-client budgets count under.
    public var client: String

    public init(reference: Reference, accept: AcceptSet, isHead: Bool, identity: ClientIdentity?, client: String) {
        self.reference = reference
        self.accept = accept
        self.isHead = isHead
        self.identity = identity
        self.client = client
    }
}

extension ManifestAnswer {
    public var digest: Digest { self.manifest.digest }
    /// Validated when stored and when read back.
    public var mediaType: String { self.manifest.mediaType }
    public var bytes: [UInt8] { self.manifest.bytes }
    /// How the cache answered, for the request's outcome.
    public var cacheOutcome: RequestOutcome.Cache { self.stale ? .stale : (self.fromCache ? .hit : .miss) }
}

extension RoutedRequest {
    /// The configured name of the upstream the request was routed to.
    public var upstreamName: String { self.client.configuration.name }
}
