import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfUpstream

/// A blob streamed from the upstream to one client without being cached, for when the cache cannot
/// keep it (no room on disk). Verified like a fill: the bytes are hashed as they pass and the last
/// chunk is held back until size and digest check out, so a corrupt or truncated upstream body
/// never reaches the client as a complete response. Memory: one chunk.
public struct BlobRelay: Sendable {
    public let digest: Digest
    /// The upstream's `Content-Length`, when it sent one.
    public let size: Int64?
    private let body: HTTPClientResponse.Body

    /// Asks the upstream for the blob; throws (before anything was sent to the client) if it will not give it.
    public static func open(
        _ digest: Digest, upstream: UpstreamChain, repository: String, identity: UpstreamIdentity, stats: MirrorStats
    ) async throws(RegistryError) -> BlobRelay {
        let response: UpstreamResponse
        do {
            response = try await upstream.send(.GET, repository: repository, path: "blobs/\(digest)", as: identity).response
        } catch {
            throw RegistryError(.unavailable, "the cache cannot store this blob and the upstream cannot be reached")
        }
        guard response.status == 200, let body = response.body else {
            throw UpstreamErrors.fromStatus(response.status, headers: response.headers, kind: .blob)
        }
        stats.relays.add()
        return BlobRelay(digest: digest, size: response.contentLength, body: body)
    }

    /// Hands every chunk to `send`, the last one only once the whole body verified; throws otherwise.
    public func stream(_ send: (ByteBuffer) async throws -> Void) async throws {
        var hasher = StreamingSHA256()
        var held: ByteBuffer?
        var received: Int64 = 0
        for try await chunk in self.body {
            chunk.withUnsafeReadableBytes { hasher.update($0) }
            received += Int64(chunk.readableBytes)
            if let size = self.size, received > size { throw RegistryError(.blobUnknown, "upstream sent more bytes than announced") }
            if let previous = held { try await send(previous) }
            held = chunk
        }
        guard self.size == nil || received == self.size, hasher.finalize() == self.digest.hex else {
            throw RegistryError(.blobUnknown, "upstream content does not match digest \(self.digest)")
        }
        if let held { try await send(held) }
    }
}
