import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfClock
import WharfStorage
import WharfUpstream

/// A manifest to send to a client.
public struct ManifestAnswer: Sendable {
    public let manifest: StoredManifest
    /// True when the upstream could not be asked and a cached tag answer past its TTL was used, or
    /// when a fallback resolved the tag because the upstream was unreachable (the upstream did not
    /// confirm it).
    public let stale: Bool
    /// True when no upstream request was needed.
    public let fromCache: Bool
}

/// Resolves manifests by tag or digest: from the index when fresh, else from the upstream (or, as
/// ``FailoverPolicy`` allows, its fallbacks), verified and stored by digest with exact bytes. Tag
/// answers are cached per accept class, under the upstream's name whichever source gave them.
///
/// A tag resolved by a fallback (the upstream was unreachable) is answered marked stale and stored
/// already expired: the next request asks the upstream again, and while the upstream stays down the
/// mapping is what an expired tag is served from.
public struct ManifestResolver: Sendable {
    public static let maxManifestBytes = 4 * 1024 * 1024
    private let index: CacheIndex
    private let stats: MirrorStats
    private let negative: NegativeCache
    private let gate: RepositoryLinkGate
    private let logger: Logger
    /// Background revalidations of tags answered stale within their stale-while-revalidate window.
    package let revalidations = TagRevalidations()

    public init(
        index: CacheIndex, stats: MirrorStats, gate: RepositoryLinkGate, negativeTTL: Duration = .seconds(30), logger: Logger
    ) {
        self.index = index
        self.stats = stats
        self.gate = gate
        self.negative = NegativeCache(ttl: negativeTTL)
        self.logger = logger
    }

    /// `identity`: whose credentials upstream requests carry (the mirror's, or a pass-through client's).
    public func resolve(
        upstream: UpstreamChain, repository: String, reference: Reference, accept: AcceptSet, identity: UpstreamIdentity = .mirror
    ) async throws(RegistryError) -> ManifestAnswer {
        let negativeKey = "\(upstream.name)\u{0}\(repository)\u{0}\(reference)\u{0}\(accept.classKey)"
        switch reference {
        case .digest(let digest):
            if let cached = self.cached(digest) {
                try await self.gate.confirm(digest, kind: .manifest, upstream: upstream, repository: repository, identity: identity)
                return ManifestAnswer(manifest: cached, stale: false, fromCache: true)
            }
            try self.checkNegative(negativeKey)
            let fetched = try await self.remembering404(negativeKey) { () async throws(RegistryError) -> Fetched in
                try await self.fetch(upstream: upstream, repository: repository, reference: digest.description, accept: .all, expected: digest, identity: identity)
            }
            await self.store(fetched.manifest, upstream: upstream, repository: repository, tag: nil)
            return ManifestAnswer(manifest: fetched.manifest, stale: false, fromCache: false)

        case .tag(let tag):
            let cachedTag = self.cachedTag(upstream: upstream.name, repository: repository, tag: tag.value, accept: accept)
            guard let (record, manifest) = cachedTag else {
                try self.checkNegative(negativeKey)
                let fetched = try await self.remembering404(negativeKey) { () async throws(RegistryError) -> Fetched in
                    try await self.fetch(upstream: upstream, repository: repository, reference: tag.value, accept: accept, expected: nil, identity: identity)
                }
                await self.store(
                    fetched.manifest, upstream: upstream, repository: repository, tag: (tag.value, accept.classKey), unconfirmed: !fetched.fromPrimary)
                return ManifestAnswer(manifest: fetched.manifest, stale: !fetched.fromPrimary, fromCache: false)
            }
            let now = self.index.clock.wallSeconds()
            let expires = record.fetchedAt + Self.seconds(upstream.configuration.tagTTL)
            if now < expires {
                return ManifestAnswer(manifest: manifest, stale: false, fromCache: true)
            }
            if now < expires + UInt64(max(0, upstream.configuration.staleWhileRevalidate.components.seconds)) {
                let key = "\(upstream.name)\u{0}\(repository)\u{0}\(tag.value)\u{0}\(accept.classKey)"
                let queued = self.revalidations.start(key) {
                    do {
                        _ = try await self.revalidate(
                            upstream: upstream, repository: repository, tag: tag.value, accept: accept, cached: manifest, identity: identity)
                    } catch {
                        self.logger.notice("background tag revalidation failed", metadata: [
                            "repository": "\(repository)", "tag": "\(tag)", "reason": "\(error)",
                        ])
                    }
                }
                if queued {
                    self.stats.staleWhileRevalidateServes.add()
                    return ManifestAnswer(manifest: manifest, stale: true, fromCache: true)
                }
            }
            do {
                return try await self.revalidate(
                    upstream: upstream, repository: repository, tag: tag.value, accept: accept, cached: manifest, identity: identity)
            } catch let error where Self.allowsStale(error) {
                self.logger.notice("serving stale tag", metadata: ["repository": "\(repository)", "tag": "\(tag)", "reason": "\(error)"])
                self.stats.staleServes.add()
                return ManifestAnswer(manifest: manifest, stale: true, fromCache: true)
            }
        }
    }

    /// The cached manifest for a tag whose TTL has not passed, without any upstream request (the
    /// synchronous hit path); nil when the answer would need the upstream.
    public func freshTag(upstream: UpstreamClient, repository: String, tag: String, accept: AcceptSet) -> StoredManifest? {
        guard let (record, manifest) = self.cachedTag(upstream: upstream.configuration.name, repository: repository, tag: tag, accept: accept),
              self.index.clock.wallSeconds() < record.fetchedAt + Self.seconds(upstream.configuration.tagTTL)
        else { return nil }
        return manifest
    }

    /// True when ``resolve(upstream:repository:reference:accept:identity:)`` can answer without the
    /// upstream (a linked manifest by digest, a tag within its TTL).
    public func isCachedAnswer(upstream: UpstreamClient, repository: String, reference: Reference, accept: AcceptSet) -> Bool {
        switch reference {
        case .digest(let d): return self.cachedLinked(d, upstream: upstream, repository: repository) != nil
        case .tag(let t): return self.freshTag(upstream: upstream, repository: repository, tag: t.value, accept: accept) != nil
        }
    }

    /// Whether a prefetch (`warm`) may resolve `reference` now: when the answer is cached, or the
    /// upstream's pull budget is above its reserve. In reserve one free `HEAD` of the manifest first
    /// refreshes what the upstream says of the budget.
    public func prefetchAllowed(upstream: UpstreamClient, repository: String, reference: Reference, accept: AcceptSet) async -> Bool {
        if upstream.rateLimitMode() == .normal || self.isCachedAnswer(upstream: upstream, repository: repository, reference: reference, accept: accept) {
            return true
        }
        var headers = HTTPHeaders()
        headers.add(name: "Accept", value: Self.acceptHeader(accept))
        _ = try? await upstream.send(.HEAD, repository: repository, path: "manifests/\(reference)", headers: headers)
        return upstream.rateLimitMode() == .normal
    }

    /// A cached manifest by digest, if it is linked to `repository` (the synchronous hit path).
    public func cachedLinked(_ digest: Digest, upstream: UpstreamClient, repository: String) -> StoredManifest? {
        guard self.gate.isLinked(digest, upstream: upstream, repository: repository) else { return nil }
        return self.cached(digest)
    }

    /// An expired tag: ask with a HEAD (free on Docker Hub's rate limit). Unchanged → keep the cached
    /// manifest; changed → GET only a digest not already cached, and not while the pull budget is
    /// down to its reserve (a 429 the caller answers with the stale tag). A fallback's answer (the
    /// upstream is unreachable) leaves the tag unconfirmed: answered stale, stored expired.
    private func revalidate(
        upstream: UpstreamChain, repository: String, tag: String, accept: AcceptSet, cached: StoredManifest, identity: UpstreamIdentity
    ) async throws(RegistryError) -> ManifestAnswer {
        var headers = HTTPHeaders()
        headers.add(name: "Accept", value: Self.acceptHeader(accept))
        let answer: UpstreamChain.Answer
        do {
            answer = try await upstream.send(.HEAD, repository: repository, path: "manifests/\(tag)", headers: headers, as: identity)
        } catch {
            throw UpstreamErrors.from(error, kind: .manifest)
        }
        let response = answer.response
        guard response.status == 200 else {
            throw UpstreamErrors.fromStatus(response.status, headers: response.headers, kind: .manifest)
        }
        let current = response.headers.first(name: "docker-content-digest").flatMap { try? Digest(parsing: $0) }
        let manifest: StoredManifest
        var fromCache = true
        var confirmed = answer.fromPrimary
        if current == cached.digest {
            manifest = cached
            if confirmed { self.stats.revalidations.add() }
        } else if let current, let known = self.cached(current), accept.accepts(known.mediaType) {
            manifest = known
        } else if answer.source.rateLimitMode(for: identity) != .normal {
            // The pull budget is down to its reserve: keep it for content nobody has; the tag is served stale.
            self.stats.budgetStaleServes.add()
            throw RegistryError(.tooManyRequests, "upstream pull budget in reserve")
        } else if let current {
            manifest = try await self.fetch(
                upstream: upstream, repository: repository, reference: current.description, accept: accept, expected: current, identity: identity
            ).manifest
            fromCache = false
        } else {
            let fetched = try await self.fetch(upstream: upstream, repository: repository, reference: tag, accept: accept, expected: nil, identity: identity)
            manifest = fetched.manifest
            confirmed = fetched.fromPrimary
            fromCache = false
        }
        await self.store(manifest, upstream: upstream, repository: repository, tag: (tag, accept.classKey), unconfirmed: !confirmed)
        return ManifestAnswer(manifest: manifest, stale: !confirmed, fromCache: fromCache)
    }

    private func checkNegative(_ key: String) throws(RegistryError) {
        guard self.negative.contains(key) else { return }
        self.stats.negativeHits.add()
        throw RegistryError(.manifestUnknown, "not found upstream (cached answer)")
    }

    private func remembering404(_ key: String, _ body: () async throws(RegistryError) -> Fetched) async throws(RegistryError) -> Fetched {
        do {
            return try await body()
        } catch {
            if error.status == 404 { self.negative.insert(key) }
            throw error
        }
    }

    static func seconds(_ d: Duration) -> UInt64 { UInt64(max(0, d.components.seconds)) }

    static func acceptHeader(_ accept: AcceptSet) -> String {
        accept.wildcard ? MediaType.modern.joined(separator: ", ") + ", */*" : accept.headerValue
    }

    private static func allowsStale(_ e: RegistryError) -> Bool {
        e.status >= 500 || e.status == 429
    }

    private func cached(_ digest: Digest) -> StoredManifest? {
        (try? self.index.manifest(digest)) ?? nil
    }

    /// The cached answer for this accept class, or the full-class answer if the client accepts its type.
    private func cachedTag(upstream: String, repository: String, tag: String, accept: AcceptSet) -> (TagRecord, StoredManifest)? {
        var classes = [accept.classKey]
        if accept.classKey != AcceptSet.all.classKey { classes.append(AcceptSet.all.classKey) }
        for cls in classes {
            guard let (record, manifest) = (try? self.index.taggedManifest(upstream: upstream, repository: repository, tag: tag, acceptClass: cls)) ?? nil,
                  accept.accepts(record.mediaType), let manifest
            else { continue }
            return (record, manifest)
        }
        return nil
    }

    /// A verified manifest and whether the upstream itself (not a fallback) served it.
    private struct Fetched: Sendable {
        let manifest: StoredManifest
        let fromPrimary: Bool
    }

    /// GETs a manifest from the upstream or, as ``FailoverPolicy`` allows, a fallback, and verifies it:
    /// against `expected` (by digest, whichever source), else against the answer's own digest header.
    private func fetch(
        upstream: UpstreamChain, repository: String, reference: String, accept: AcceptSet, expected: Digest?, identity: UpstreamIdentity
    ) async throws(RegistryError) -> Fetched {
        var headers = HTTPHeaders()
        headers.add(name: "Accept", value: Self.acceptHeader(accept))
        let response: UpstreamResponse
        let answer: UpstreamChain.Answer
        let body: ByteBuffer
        do {
            answer = try await upstream.send(.GET, repository: repository, path: "manifests/\(reference)", headers: headers, as: identity)
            response = answer.response
            guard response.status == 200 else {
                _ = try? await response.collect(upTo: 64 * 1024)
                throw UpstreamErrors.fromStatus(response.status, headers: response.headers, kind: .manifest)
            }
            body = try await response.collect(upTo: Self.maxManifestBytes)
        } catch let e as RegistryError {
            throw e
        } catch is NIOTooManyBytesError {
            throw RegistryError(.manifestInvalid, "the upstream's manifest is larger than \(Self.maxManifestBytes >> 20) MiB", status: 502)
        } catch {
            throw UpstreamErrors.from(error, kind: .manifest)
        }
        let bytes = Array(buffer: body)
        let mediaType = (response.headers.first(name: "content-type") ?? "")
            .split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        guard !MediaType.isSchema1(mediaType) else {
            throw RegistryError(.manifestUnknown, "schema1 manifests are not supported by this mirror")
        }
        let computed = Digest.sha256(of: bytes)
        let claimed = response.headers.first(name: "docker-content-digest").flatMap { try? Digest(parsing: $0) }
        guard computed == (expected ?? claimed ?? computed) else {
            self.logger.warning("upstream manifest digest mismatch", metadata: [
                "repository": "\(repository)", "reference": "\(reference)", "source": "\(answer.source.configuration.name)",
            ])
            self.stats.digestMismatches.add()
            throw RegistryError(.unknown, "upstream manifest does not match its digest", status: 502)
        }
        // From the header or, when it is absent, the manifest's own `mediaType`: either way an
        // upstream's text, checked before it is stored or sent (a CR/LF in it would split the response,
        // `text/html` would have browsers run it as a page of Wharf's origin).
        let type = mediaType.isEmpty ? Self.sniffMediaType(bytes).lowercased() : mediaType
        guard MediaType.isManifestType(type) else {
            self.logger.warning("upstream manifest has an invalid media type", metadata: ["repository": "\(repository)", "reference": "\(reference)"])
            throw RegistryError(.manifestInvalid, "the upstream's manifest does not have a manifest's media type (application/…+json)", status: 502)
        }
        guard Self.isJSONObject(bytes) else {
            self.logger.warning("upstream manifest is not a JSON object", metadata: ["repository": "\(repository)", "reference": "\(reference)"])
            throw RegistryError(.manifestInvalid, "the upstream's manifest is not a JSON object", status: 502)
        }
        return Fetched(manifest: StoredManifest(digest: computed, mediaType: type, bytes: bytes), fromPrimary: answer.fromPrimary)
    }

    /// Stores a verified manifest with its tag and the digests it names, in one durable transaction.
    /// An `unconfirmed` tag (a fallback resolved it) is stored as fetched one tag TTL ago: expired.
    private func store(
        _ manifest: StoredManifest, upstream: UpstreamChain, repository: String, tag: (String, String)?, unconfirmed: Bool = false
    ) async {
        let index = self.index, name = upstream.name
        let tag = tag.map { (name: $0.0, acceptClass: $0.1) }
        let age = unconfirmed ? Self.seconds(upstream.configuration.tagTTL) : 0
        do {
            try await BlockingIO.run {
                try index.putManifest(
                    manifest, upstream: name, repository: repository, tag: tag, naming: Self.referencedDigests(manifest.bytes), tagAge: age)
            }
        } catch {
            self.logger.error("index write failed", metadata: ["error": "\(error)"])
        }
    }

    /// Digests a manifest names (config, layers, child manifests): they are *named* in its repository,
    /// which lets the link gate serve them offline but never vouches for them (see ``CacheIndex/name(_:upstream:repository:)``).
    /// Foreign and non-distributable layers (`urls`, or a `nondistributable`/`foreign` media type) are
    /// left out: the upstream never serves those through the repository.
    static func referencedDigests(_ bytes: [UInt8]) -> [Digest] {
        struct Descriptor: Decodable { let digest: String?; let mediaType: String?; let urls: [String]? }
        struct Shape: Decodable { let config: Descriptor?; let layers: [Descriptor]?; let manifests: [Descriptor]?; let blobs: [Descriptor]? }
        guard let shape = try? JSONDecoder().decode(Shape.self, from: Data(bytes)) else { return [] }
        let all = [shape.config].compactMap { $0 } + (shape.layers ?? []) + (shape.manifests ?? []) + (shape.blobs ?? [])
        return all.compactMap { d in
            let type = d.mediaType ?? ""
            guard d.urls == nil, !type.contains("nondistributable"), !type.contains(".foreign.") else { return nil }
            return d.digest.flatMap { try? Digest(parsing: $0) }
        }
    }

    /// Whether `bytes` parse as one JSON object: anything else is no manifest a client could use, so it is
    /// neither cached nor served (the parser's nesting limit also bounds what a hostile body can cost).
    static func isJSONObject(_ bytes: [UInt8]) -> Bool {
        (try? JSONSerialization.jsonObject(with: Data(bytes))) is [String: Any]
    }

    /// A manifest without `Content-Type`: read its `mediaType` field.
    static func sniffMediaType(_ bytes: [UInt8]) -> String {
        struct Shape: Decodable { let mediaType: String? }
        return (try? JSONDecoder().decode(Shape.self, from: Data(bytes)))?.mediaType ?? MediaType.ociManifest
    }
}
