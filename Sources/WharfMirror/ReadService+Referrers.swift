import NIOCore
import OCIDistribution
import WharfClock
import WharfStorage
import WharfUpstream

/// Where a referrers answer came from (the `source` label of `wharf_referrers_served_total`).
public enum ReferrersSource: String, Sendable, CaseIterable {
    /// The upstream's referrers API.
    case upstream
    /// The referrers-tag-schema index (`sha256-<hex>`), resolved and cached like any tag.
    case tagSchema = "tag-schema"
    /// Neither: no fallback tag (or not an OCI index), so no referrers.
    case empty
}

/// The answer to `GET /v2/<name>/referrers/<digest>`.
public struct ReferrersAnswer: Sendable {
    /// The referrers, already filtered when ``filtered`` is true.
    public let index: ReferrersIndex
    /// An `artifactType` filter was applied (`OCI-Filters-Applied: artifactType`).
    public let filtered: Bool
    public let source: ReferrersSource
    /// A fallback tag past its TTL, served because the upstream failed.
    public let stale: Bool
    /// How the cache answered, for the request's outcome.
    public let cache: RequestOutcome.Cache
}

extension ReadService {
    /// The referrers of `subject` in the routed repository, for every upstream: from its referrers
    /// API when it has one; else (the API answers 404, as Distribution 2.8 and Docker Hub do) from the
    /// referrers-tag-schema index `sha256-<hex>`, resolved through the manifest path (cached with the
    /// tag TTL, served stale when the upstream is down); else an empty index. An upstream seen without
    /// the API is not asked again for one tag TTL.
    public func referrers(
        of subject: Digest, artifactType: String?, _ routed: RoutedRequest, identity: ClientIdentity?, client: String
    ) async throws(RegistryError) -> ReferrersAnswer {
        let upstream = routed.client.configuration
        let now = self.mirror.index.clock.wallSeconds()
        let knowledge = self.mirror.referrersAPI.knowledge(of: upstream.name, now: now, ttlSeconds: upstream.tagTTL.components.seconds)
        let tag = try Tag(parsing: ReferrersIndex.fallbackTag(of: subject))
        let cached = knowledge == .lacking
            && self.mirror.manifests.isCachedAnswer(upstream: routed.client, repository: routed.repository, reference: .tag(tag), accept: Self.indexOnly)
        if !cached { try self.mirror.lookups.charge(client) }
        var answer: ReferrersAnswer
        if knowledge != .lacking,
           let index = try await self.referrersFromAPI(of: subject, artifactType: artifactType, routed, identity: identity, knowledge: knowledge, now: now) {
            answer = ReferrersAnswer(index: index, filtered: false, source: .upstream, stale: false, cache: .upstream)
        } else {
            answer = try await self.referrersFromTag(tag, routed, identity: identity)
        }
        if let artifactType {
            answer = ReferrersAnswer(
                index: answer.index.filtered(artifactType: artifactType), filtered: true, source: answer.source, stale: answer.stale,
                cache: answer.cache)
        }
        self.mirror.stats.referrersServed[answer.source]?.add()
        return answer
    }

    /// The fallback tag's index must be an OCI index: nothing else is asked for or accepted.
    static let indexOnly = AcceptSet(lines: [MediaType.ociIndex])

    /// The upstream's referrers API: its index (valid descriptors only), or nil when the tag schema
    /// must answer: a 404 (no such API: remembered), a 401/403 (about the repository, not the API: not
    /// remembered), or an upstream failure when the upstream is known to lack the API (the cached
    /// fallback tag, stale if need be). Anything but an OCI index in a 200 is a 502.
    private func referrersFromAPI(
        of subject: Digest, artifactType: String?, _ routed: RoutedRequest, identity: ClientIdentity?,
        knowledge: ReferrersAPIMemory.Knowledge, now: UInt64
    ) async throws(RegistryError) -> ReferrersIndex? {
        let memory = self.mirror.referrersAPI, name = routed.client.configuration.name
        // Asked with the filter (a smaller answer), and filtered here again whatever the upstream says it did.
        let query = artifactType.map { "artifactType=\(Self.percentEncode($0))" } ?? ""
        let response: UpstreamResponse, body: ByteBuffer
        do {
            (response, body) = try await self.upstreamGET(routed, path: "referrers/\(subject)", query: query, identity: identity)
        } catch where knowledge == .lackingExpired {
            return nil
        }
        switch response.status {
        case 200:
            memory.noteAnswered(name)
            guard let index = ReferrersIndex(parsing: Array(body.readableBytesView)) else {
                throw RegistryError(.unknown, "upstream sent an invalid referrers index", status: 502)
            }
            return index
        case 404:
            memory.noteLacking(name, now: now)
            return nil
        case 401, 403:
            return nil
        default:
            if knowledge == .lackingExpired { return nil }
            throw UpstreamErrors.fromStatus(response.status, headers: response.headers, kind: .tags)
        }
    }

    /// The referrers-tag-schema index through the manifest path; a missing tag (or one that is not an
    /// OCI index) means no referrers. The tag's bytes are bounded by the manifest path (4 MiB).
    private func referrersFromTag(_ tag: Tag, _ routed: RoutedRequest, identity: ClientIdentity?) async throws(RegistryError) -> ReferrersAnswer {
        let manifest: ManifestAnswer
        do {
            manifest = try await self.mirror.manifests.resolve(
                upstream: routed.chain, repository: routed.repository, reference: .tag(tag), accept: Self.indexOnly, identity: identity ?? .mirror)
        } catch where error.status == 404 {
            return ReferrersAnswer(index: .empty, filtered: false, source: .empty, stale: false, cache: .miss)
        }
        guard manifest.mediaType == MediaType.ociIndex else {
            return ReferrersAnswer(index: .empty, filtered: false, source: .empty, stale: manifest.stale, cache: manifest.cacheOutcome)
        }
        guard let index = ReferrersIndex(parsing: manifest.bytes) else {
            throw RegistryError(.manifestInvalid, "the upstream's referrers tag \(tag) is not a valid image index", status: 502)
        }
        return ReferrersAnswer(index: index, filtered: false, source: .tagSchema, stale: manifest.stale, cache: manifest.cacheOutcome)
    }

    /// Percent-encodes a media type for a query (everything but unreserved characters).
    static func percentEncode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            if (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x7E {
                out.append(Character(UnicodeScalar(b)))
            } else {
                out += "%" + (b < 16 ? "0" : "") + String(b, radix: 16, uppercase: true)
            }
        }
        return out
    }
}
