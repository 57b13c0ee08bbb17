import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfUpstream

/// One byte range of a blob that is not cached yet, fetched from the upstream with a ranged `GET`
/// and passed straight through to one client (lazy pulling: eStargz, SOCI, Nydus).
///
/// It is never stored, and it cannot be verified: a range is only as trustworthy as the upstream,
/// exactly as with a direct pull. The blob's own fill, which runs beside it, is what gets verified
/// and cached. The upstream's answer must be a `206` whose `Content-Range` is exactly the bounds the
/// client's range resolves to for the blob's size, with a matching `Content-Length`; the body must
/// be exactly that long. Memory: one chunk.
public struct BlobRangeRelay: Sendable {
    /// The bytes sent, inclusive, and the blob's size.
    public let bounds: ClosedRange<Int64>
    public let total: Int64
    private let body: HTTPClientResponse.Body
    /// Where the bytes come from (its received-bytes count).
    private let upstream: UpstreamClient

    public var count: Int64 { Int64(self.bounds.count) }

    /// Asks the upstream for `bounds` of the blob of `size` bytes. Nil when the upstream will not
    /// give exactly that range (it ignored `Range`, refused, or answered other bounds): the caller
    /// then follows the fill instead.
    static func open(
        _ digest: Digest, bounds: ClosedRange<Int64>, size: Int64, upstream: UpstreamClient, repository: String,
        identity: UpstreamIdentity, stats: MirrorStats
    ) async -> BlobRangeRelay? {
        var headers = HTTPHeaders()
        headers.add(name: "Range", value: "bytes=\(bounds.lowerBound)-\(bounds.upperBound)")
        guard let response = try? await upstream.send(
            .GET, repository: repository, path: "blobs/\(digest)", headers: headers, as: identity),
            let body = response.body
        else { return nil }
        guard response.status == 206,
              let answered = response.headers.first(name: "content-range").flatMap(ByteRange.contentRange),
              answered.bounds == bounds, answered.total == size, response.contentLength == Int64(bounds.count)
        else {
            // Not what was asked: read nothing more (dropping the body closes that connection).
            return nil
        }
        stats.rangedRelays.add()
        return BlobRangeRelay(bounds: bounds, total: size, body: body, upstream: upstream)
    }

    /// Hands every chunk to `send`; throws if the upstream sends more or fewer bytes than the range.
    public func stream(_ send: (ByteBuffer) async throws -> Void) async throws {
        var received: Int64 = 0
        for try await chunk in self.body {
            received += Int64(chunk.readableBytes)
            guard received <= self.count else { throw RegistryError(.blobUnknown, "upstream sent more bytes than the range") }
            self.upstream.countReceived(chunk.readableBytes)
            try await send(chunk)
        }
        guard received == self.count else { throw RegistryError(.blobUnknown, "upstream range ended after \(received) of \(self.count) bytes") }
    }
}
