#if canImport(Glibc)
import Glibc
#endif
import NIOHTTP1
import OCIDistribution
import WharfClock
import WharfStorage
import WharfUpstream

/// A `GET`/`HEAD` of `/v2/<name>/blobs/<digest>`.
public struct BlobQuery: Sendable {
    public var digest: Digest
    public var isHead: Bool
    /// The GET's `Range` (parsed and validated), if it has one.
    public var range: ByteRange?
    /// The GET has a `Range` header (an uncached relay cannot honour one).
    public var hasRange: Bool { self.range != nil }
    public var identity: ClientIdentity?
    public var client: String
    /// An edge redirects blob GETs to a cache: the answer is ``BlobAnswer/redirect`` once the pull is authorized.
    public var redirectsGET: Bool

    public init(digest: Digest, isHead: Bool, range: ByteRange?, identity: ClientIdentity?, client: String, redirectsGET: Bool = false) {
        self.digest = digest
        self.isHead = isHead
        self.range = range
        self.identity = identity
        self.client = client
        self.redirectsGET = redirectsGET
    }
}

/// The answer to a blob request, which the HTTP layer renders.
public enum BlobAnswer: ~Copyable {
    /// A GET of a cached blob: send this file (whole, or the requested range).
    case file(CachedFile)
    /// A HEAD: the blob's headers only (`size` nil when the upstream gave none); `cache` says whence.
    case head(size: Int64?, cache: RequestOutcome.Cache)
    /// A GET of a blob being downloaded: follow the fill (its last byte only once verified); release
    /// the mark when done sending (the evictor spares the blob until then).
    case fill(BlobFill.Following, ServingMark)
    /// The cache cannot keep the blob: stream it from the upstream uncached, verified.
    case relay(BlobRelay)
    /// A `Range` GET of a blob not cached yet, whose bytes the fill beside it has not reached: the
    /// range straight from the upstream, unverified and never stored.
    case rangeRelay(BlobRangeRelay)
    /// An edge: redirect the GET to a cache with a signed URL (the pull is authorized).
    case redirect
}

extension ReadService {
    /// A cached blob linked to its repository, answered on the event loop: `.file` (GET) or `.head`,
    /// nil for anything that needs the async side (a miss, an unconfirmed link, a damaged file).
    /// Files up to ``inlineBodyLimit`` come from `files`, the loop's open-file cache.
    public func cachedBlob(_ query: BlobQuery, _ routed: RoutedRequest, files: LoopOpenFiles) -> BlobAnswer? {
        let digest = query.digest
        if query.isHead {
            // A HEAD opens no file, so it asks the record too: a link outlives an evicted blob.
            guard let found = try? self.mirror.index.blob(digest, linkedTo: routed.upstreamName, repository: routed.repository),
                  let record = found.record, found.linked
            else { return nil }
            return .head(size: record.size, cache: .hit)
        }
        // One lookup: the size comes with the link; the file (opened and sized) is the proof it is cached.
        guard let size = try? self.mirror.index.confirmedBlobSize(digest, linkedTo: routed.upstreamName, repository: routed.repository)
        else { return nil }
        if size <= Self.inlineBodyLimit {
            guard let cached = files.cache.descriptor(digest, size: size, now: self.mirror.index.clock.wallSeconds()) else { return nil }
            if cached.touch { self.mirror.index.touch(digest) }
            return .file(CachedFile(descriptor: cached.fd, size: size, owned: false, mark: nil))
        }
        let mark = self.mirror.serving.markServing(digest)
        guard let opened = self.mirror.store.open(digest) else { return nil }
        guard opened.size == size else {
            close(opened.fd)
            return nil
        }
        self.mirror.index.touch(digest)
        return .file(CachedFile(descriptor: opened.fd, size: opened.size, owned: true, mark: mark))
    }

    /// The answer for any blob request: the cached file, the upstream's answer to a HEAD, a fill to
    /// follow, an uncached relay, or a redirect (edge). Throws the registry error to send instead.
    public func blob(_ query: BlobQuery, _ routed: RoutedRequest) async throws(RegistryError) -> BlobAnswer {
        let digest = query.digest, upstream = routed.client, repository = routed.repository
        let identity = query.identity ?? .mirror
        // Known in this repository (its manifests named it, or the upstream confirmed it): no more checks.
        let found = try? self.mirror.index.blob(digest, linkedTo: upstream.configuration.name, repository: repository)
        let linked = found?.linked ?? false
        if found?.record == nil || !linked {
            if query.isHead, found?.record == nil, self.mirror.blobHeadMisses.contains(Self.headMissKey(routed, digest)) {
                self.mirror.stats.negativeHits.add()
                throw RegistryError(.blobUnknown, "blob unknown upstream (cached answer)")
            }
            // The answer needs the upstream (a fill, a HEAD, a confirmation): counted per client.
            try self.mirror.lookups.charge(query.client)
        }
        if query.redirectsGET, !query.isHead {
            // Edge: the pull is authorized here; the bytes come from the cache the signed URL names.
            if !linked { try await self.confirm(digest, routed, identity) }
            return .redirect
        }
        if let record = found?.record {
            if !linked { try await self.confirm(digest, routed, identity) }
            if query.isHead { return .head(size: record.size, cache: .hit) }
            let mark = self.mirror.serving.markServing(digest)
            if let file = self.mirror.store.open(digest) {
                if file.size == record.size {
                    self.mirror.index.touch(digest)
                    return .file(CachedFile(descriptor: file.fd, size: file.size, owned: true, mark: mark))
                }
                close(file.fd)  // a damaged file: fetch it again
                return try await self.miss(query, routed, linked: true)
            }
        }
        if query.isHead { return try await self.headMiss(routed, digest, identity) }
        return try await self.miss(query, routed, linked: linked)
    }

    /// The uncached relay, for a client whose fill turned out unkeepable before anything was sent.
    public func relay(_ query: BlobQuery, _ routed: RoutedRequest) async throws(RegistryError) -> BlobAnswer {
        guard !query.hasRange else { throw RegistryError(.unavailable, "the cache cannot store this blob right now; retry without Range") }
        return .relay(try await BlobRelay.open(
            query.digest, upstream: routed.chain, repository: routed.repository, identity: query.identity ?? .mirror, stats: self.mirror.stats))
    }

    /// True for the error a fill fails with when the cache cannot keep its blob (disk full): the
    /// request may still be answered with ``relay(_:_:)`` if nothing was sent yet.
    public static func isCannotKeep(_ error: RegistryError) -> Bool { BlobFills.isCannotKeep(error) }

    /// Not (usable) in the cache: join or start the fill; it may also have just completed. Bytes
    /// that came through another repository are served only once this repository is confirmed.
    private func miss(_ query: BlobQuery, _ routed: RoutedRequest, linked: Bool) async throws(RegistryError) -> BlobAnswer {
        let digest = query.digest, identity = query.identity ?? .mirror
        let source: BlobFills.Source
        do {
            source = try self.mirror.fills.source(for: digest, upstream: routed.chain, repository: routed.repository, identity: identity)
        } catch {
            guard BlobFills.isCannotKeep(error) else { throw error }
            return try await self.relay(query, routed)
        }
        switch source {
        case .cached:
            if !linked { try await self.confirm(digest, routed, identity) }
            let mark = self.mirror.serving.markServing(digest)
            guard let file = self.mirror.store.open(digest) else { throw RegistryError(.blobUnknown, "blob vanished from the cache") }
            return .file(CachedFile(descriptor: file.fd, size: file.size, owned: true, mark: mark))
        case .fill(let following):
            // Followed from here on: a confirmation or a ranged look-ahead that takes longer than the
            // orphan grace does not leave the fill looking abandoned.
            let fill = following.fill
            if !linked, fill.origin != (routed.upstreamName, routed.repository) { try await self.confirm(digest, routed, identity) }
            if let range = query.range, let relay = await self.rangeAhead(of: fill, range, routed, identity) {
                following.release()
                return .rangeRelay(relay)
            }
            return .fill(following, self.mirror.serving.markServing(digest))
        }
    }

    /// Ranges this far past what a fill has written are asked of the upstream; nearer ones wait
    /// for the fill (it will get there about as soon as a new upstream request would answer).
    static let rangeLookahead: Int64 = 1 << 20

    /// For a `Range` GET of a blob being filled: a ranged upstream GET (of the upstream itself, never a
    /// fallback: a range cannot be verified) when the range starts beyond
    /// what the fill has written (plus ``rangeLookahead``) and the blob's ranged budget allows it
    /// (``BlobFill/reserveRangedBytes(_:size:)``); nil when the range follows the fill instead (its
    /// own bytes only: see the HTTP layer). Waits for the fill's response head, which gives the size.
    private func rangeAhead(
        of fill: BlobFill, _ range: ByteRange, _ routed: RoutedRequest, _ identity: UpstreamIdentity
    ) async -> BlobRangeRelay? {
        let head = await fill.wait(for: .head)
        guard case .streaming(let size?) = head.phase, let bounds = try? range.resolve(size: size),
              bounds.lowerBound >= head.written + Self.rangeLookahead,
              fill.reserveRangedBytes(Int64(bounds.count), size: size)
        else { return nil }
        return await BlobRangeRelay.open(
            fill.digest, bounds: bounds, size: size, upstream: routed.client, repository: routed.repository, identity: identity,
            stats: self.mirror.stats)
    }

    private func confirm(_ digest: Digest, _ routed: RoutedRequest, _ identity: UpstreamIdentity) async throws(RegistryError) {
        try await self.mirror.linkGate.confirm(digest, kind: .blob, upstream: routed.chain, repository: routed.repository, identity: identity)
    }

    private static func headMissKey(_ routed: RoutedRequest, _ digest: Digest) -> String {
        "\(routed.upstreamName)\u{0}\(routed.repository)\u{0}\(digest.hex)"
    }

    /// A HEAD of a blob not cached here: asked upstream, or a fallback (a 404, the upstream's only, is remembered briefly).
    private func headMiss(_ routed: RoutedRequest, _ digest: Digest, _ identity: UpstreamIdentity) async throws(RegistryError) -> BlobAnswer {
        let response: UpstreamResponse
        do {
            response = try await routed.chain.send(.HEAD, repository: routed.repository, path: "blobs/\(digest)", as: identity).response
        } catch {
            throw RegistryError(.blobUnknown, "upstream unreachable")
        }
        guard response.status == 200 else {
            if response.status == 404 { self.mirror.blobHeadMisses.insert(Self.headMissKey(routed, digest)) }
            throw RegistryError(.blobUnknown, "blob unknown upstream (status \(response.status))")
        }
        return .head(size: response.contentLength, cache: .miss)
    }
}
