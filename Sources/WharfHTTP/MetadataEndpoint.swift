import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfMirror

/// `tags/list` (with `n`/`last` paging and `Link`), answered from the upstream, and `referrers/<digest>`.
struct MetadataEndpoint: Sendable {
    let reads: ReadService
    static let maxPageSize = 10_000

    func tags(name rawName: String, target: ParsedTarget, writer: ResponseWriter) async throws {
        let name = try RepositoryName(parsing: rawName)
        var n: Int?
        if let raw = target.queryValue("n") {
            guard let v = Int(raw), v >= 0, v <= Self.maxPageSize else {
                throw RegistryError(.paginationInvalid, "n must be an integer between 0 and \(Self.maxPageSize)")
            }
            n = v
        }
        let last = target.queryValue("last")
        if let last { _ = try Tag(parsing: last) }
        let routed = try await self.reads.route(name, namespace: writer.namespace, identity: writer.identity)
        writer.routed = routed
        var query: [String] = []
        if let n { query.append("n=\(n)") }
        if let last { query.append("last=\(RequestRouter.percentEncode(last))") }
        let body = try await self.reads.upstreamDocument(routed, path: "tags/list", query: query.joined(separator: "&"), identity: writer.identity)
        struct TagList: Decodable { let tags: [String]? }
        guard let list = try? JSONDecoder().decode(TagList.self, from: body.data) else {
            throw RegistryError(.unknown, "upstream sent an invalid tag list", status: 502)
        }
        // Page locally too: an upstream may ignore n/last. A name that is not a tag by the OCI grammar
        // is the upstream's text, not a tag a client could pull: it is left out.
        var tags = (list.tags ?? []).filter { (try? Tag(parsing: $0)) != nil }.sorted()
        if let last { tags = tags.filter { $0 > last } }
        var more = body.upstreamHasMore
        if let n, tags.count > n { tags = Array(tags.prefix(n)); more = true }
        if n == 0 { more = false }
        var h = writer.headers()
        h.add(name: "Content-Type", value: "application/json")
        if more, let n, let lastTag = tags.last {
            var link = "/v2/\(name)/tags/list?n=\(n)&last=\(RequestRouter.percentEncode(lastTag))"
            if let ns = target.queryValue("ns") { link += "&ns=\(RequestRouter.percentEncode(ns))" }
            h.add(name: "Link", value: "<\(link)>; rel=\"next\"")
        }
        let json = "{\"name\":\(JSONString.quote(name.value)),\"tags\":[" + tags.map(JSONString.quote).joined(separator: ",") + "]}"
        writer.cache = .upstream
        try await writer.send(status: .ok, headers: h, body: writer.allocator.buffer(string: json))
    }

    /// `referrers/<digest>[?artifactType=]` for every upstream: see ``ReadService/referrers(of:artifactType:_:identity:client:)``.
    func referrers(name rawName: String, digest rawDigest: String, target: ParsedTarget, writer: ResponseWriter) async throws {
        let name = try RepositoryName(parsing: rawName)
        let digest = try Digest(parsing: rawDigest)
        let artifactType = try ReferrersIndex.artifactTypeFilter(target.queryValue("artifactType"))
        let routed = try await self.reads.route(name, namespace: writer.namespace, identity: writer.identity)
        writer.routed = routed
        let answer = try await self.reads.referrers(of: digest, artifactType: artifactType, routed, identity: writer.identity, client: writer.client)
        writer.cache = answer.cache
        var h = writer.headers()
        h.add(name: "Content-Type", value: MediaType.ociIndex)
        if answer.filtered { h.add(name: "OCI-Filters-Applied", value: "artifactType") }
        if answer.stale { h.add(name: "Warning", value: "110 wharf \"Response is Stale\""); h.add(name: "X-Wharf-Stale", value: "true") }
        try await writer.send(status: .ok, headers: h, body: ByteBuffer(bytes: answer.index.json))
    }
}
