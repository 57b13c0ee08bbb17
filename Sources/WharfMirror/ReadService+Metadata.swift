import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfUpstream

/// A JSON document passed through from the upstream (a tag list, a referrers index).
public struct UpstreamDocument: Sendable {
    public let data: Data
    /// The upstream's `Link` header announced a next page.
    public let upstreamHasMore: Bool
    /// The upstream's `OCI-Filters-Applied`, if any.
    public let filtersApplied: String?
}

extension ReadService {
    /// What a tag list or referrers request passes through: which 404 code a missing one gets.
    public enum DocumentKind: Sendable {
        case tags, referrers
    }

    /// GETs `path` (`tags/list`, `referrers/<digest>`) of the routed repository from its upstream,
    /// at most 4 MiB; upstream refusals become the matching registry errors.
    public func upstreamDocument(
        _ routed: RoutedRequest, path: String, query: String, kind: DocumentKind, identity: ClientIdentity?
    ) async throws(RegistryError) -> UpstreamDocument {
        let response: UpstreamResponse
        let buffer: ByteBuffer
        do {
            response = try await routed.client.send(.GET, repository: routed.repository, path: path, query: query, as: identity ?? .mirror)
            buffer = try await response.collect(upTo: 4 << 20)
        } catch {
            throw RegistryError(.unavailable, "upstream unreachable")
        }
        guard response.status == 200 else {
            if response.status == 404 || response.status == 401 || response.status == 403 {
                throw RegistryError(kind == .tags ? .nameUnknown : .notFound, "\(kind) not found upstream")
            }
            if response.status == 429 { throw RegistryError(.tooManyRequests, "upstream rate limit reached") }
            throw RegistryError(.unavailable, "upstream answered \(response.status)")
        }
        let link = response.headers.first(name: "link") ?? ""
        return UpstreamDocument(
            data: Data(buffer.readableBytesView), upstreamHasMore: link.contains("rel=\"next\""),
            filtersApplied: response.headers.first(name: "oci-filters-applied"))
    }
}
