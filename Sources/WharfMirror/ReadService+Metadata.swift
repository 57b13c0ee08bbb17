import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfUpstream

/// A JSON document passed through from the upstream (a tag list).
public struct UpstreamDocument: Sendable {
    public let data: Data
    /// The upstream's `Link` header announced a next page.
    public let upstreamHasMore: Bool
}

extension ReadService {
    /// The largest tag list or referrers answer read from an upstream.
    static let maxDocumentBytes = 4 << 20

    /// GETs `tags/list` (with `query`) of the routed repository from its upstream, at most 4 MiB;
    /// upstream refusals become the matching registry errors.
    public func upstreamDocument(
        _ routed: RoutedRequest, path: String, query: String, identity: ClientIdentity?
    ) async throws(RegistryError) -> UpstreamDocument {
        let (response, buffer) = try await self.upstreamGET(routed, path: path, query: query, identity: identity)
        guard response.status == 200 else {
            throw UpstreamErrors.fromStatus(response.status, headers: response.headers, kind: .tags)
        }
        let link = response.headers.first(name: "link") ?? ""
        return UpstreamDocument(data: Data(buffer.readableBytesView), upstreamHasMore: link.contains("rel=\"next\""))
    }

    /// One GET of `path` under the routed repository, its body read (at most 4 MiB) whatever the
    /// status; a transport failure, an open breaker or a back-off become 503 / 429.
    func upstreamGET(
        _ routed: RoutedRequest, path: String, query: String, identity: ClientIdentity?
    ) async throws(RegistryError) -> (UpstreamResponse, ByteBuffer) {
        do {
            let response = try await routed.client.send(.GET, repository: routed.repository, path: path, query: query, as: identity ?? .mirror)
            return (response, try await response.collect(upTo: Self.maxDocumentBytes))
        } catch {
            throw UpstreamErrors.from(error, kind: .tags)
        }
    }
}
