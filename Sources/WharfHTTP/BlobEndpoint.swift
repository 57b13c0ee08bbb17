import Foundation
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfAuth
import WharfMirror

/// `GET`/`HEAD /v2/<name>/blobs/<digest>`: renders the ``ReadService``'s answer — a cached file
/// with sendfile (buffers over TLS), a fill followed as it grows, an uncached relay, a redirect.
struct BlobEndpoint: Sendable {
    let reads: ReadService
    var edge: EdgeSettings? = nil

    func serve(name rawName: String, digest rawDigest: String, request: HTTPRequestHead, writer: ResponseWriter) async throws {
        let name = try RepositoryName(parsing: rawName)
        let digest = try Digest(parsing: rawDigest)
        // `If-Range` names the one validator a blob has, its digest as an ETag: anything else (another
        // tag, a date) means the client's copy is not this blob, so the answer is the whole of it.
        let ifRange = request.headers.first(name: "if-range").map { $0.trimmingCharacters(in: .whitespaces) }
        let rangeApplies = !writer.isHead && (ifRange == nil || ifRange == "\"\(digest)\"")
        let range = rangeApplies ? try request.headers.first(name: "range").flatMap { try ByteRange(header: $0) } : nil
        let routed = try await self.reads.route(name, namespace: writer.namespace, identity: writer.identity)
        writer.routed = routed
        let cacheURL = writer.isHead ? nil : self.edge?.redirectBlobsTo
        let query = BlobQuery(
            digest: digest, isHead: writer.isHead, range: range, identity: writer.identity, client: writer.client,
            redirectsGET: cacheURL != nil)
        let answer = try await self.reads.blob(query, routed)
        switch consume answer {
        case .file(let file):
            writer.cache = .hit
            try await self.sendFile(file, digest: digest, range: range, writer: writer)
        case .head(let size, let cache):
            writer.cache = cache
            try await writer.send(status: .ok, headers: self.headers(writer, digest, length: size), body: nil)
        case .fill(let following, let mark):
            defer { mark.release() }
            do {
                try await self.follow(following, digest: digest, range: range, writer: writer)
            } catch let error as RegistryError where ReadService.isCannotKeep(error) && writer.status == 0 {
                let fallback = try await self.reads.relay(query, routed)
                switch consume fallback {
                case .relay(let relay): try await self.relay(relay, digest: digest, writer: writer)
                default: throw error
                }
            }
        case .relay(let relay):
            try await self.relay(relay, digest: digest, writer: writer)
        case .rangeRelay(let relay):
            try await self.rangeRelay(relay, digest: digest, writer: writer)
        case .redirect:
            guard let edge = self.edge, let cacheURL else { throw RegistryError(.unsupported, "no cache to redirect to") }
            try await EdgeRedirect.send(edge, cache: cacheURL, name: rawName, digest: digest.description, writer: writer)
        }
    }

    /// Streams an uncached relay (the cache cannot keep the blob); the last chunk only once verified.
    private func relay(_ relay: BlobRelay, digest: Digest, writer: ResponseWriter) async throws {
        writer.cache = .relay
        var h = self.headers(writer, digest, length: relay.size)
        if relay.size == nil { h.add(name: "Transfer-Encoding", value: "chunked") }
        try await Self.passThrough(.ok, h, writer: writer, failure: "uncached relay failed", relay.stream)
    }

    /// Passes a range of an uncached blob through from the upstream (unverified; see ``BlobRangeRelay``).
    private func rangeRelay(_ relay: BlobRangeRelay, digest: Digest, writer: ResponseWriter) async throws {
        writer.cache = .ranged
        var h = self.headers(writer, digest, length: relay.count)
        h.add(name: "Content-Range", value: "bytes \(relay.bounds.lowerBound)-\(relay.bounds.upperBound)/\(relay.total)")
        try await Self.passThrough(.partialContent, h, writer: writer, failure: "ranged upstream read failed", relay.stream)
    }

    /// Sends the head, then every chunk `stream` produces; a stream that fails after the head aborts the response.
    private static func passThrough(
        _ status: HTTPResponseStatus, _ headers: HTTPHeaders, writer: ResponseWriter, failure: String,
        _ stream: ((ByteBuffer) async throws -> Void) async throws -> Void
    ) async throws {
        try await writer.sendHead(status: status, headers: headers)
        do {
            try await stream { chunk in try await writer.writeBody(.byteBuffer(chunk)) }
        } catch {
            throw AbortResponse(reason: "\(failure): \(error)")
        }
        try await writer.end()
    }

    private func headers(_ writer: ResponseWriter, _ digest: Digest, length: Int64?) -> HTTPHeaders {
        Self.blobHeaders(writer.headers(), digest, length: length)
    }

    /// The headers of a blob response, on top of `base`.
    static func blobHeaders(_ base: HTTPHeaders, _ digest: Digest, length: Int64?) -> HTTPHeaders {
        var h = base
        h.add(name: "Content-Type", value: "application/octet-stream")
        h.add(name: "Docker-Content-Digest", value: digest.description)
        h.add(name: "Accept-Ranges", value: "bytes")
        h.add(name: "ETag", value: "\"\(digest)\"")
        h.add(name: "Cache-Control", value: "max-age=31536000")
        if let length { h.add(name: "Content-Length", value: String(length)) }
        return h
    }

    /// Zero-copy: the file goes out as a `FileRegion` (sendfile; on TLS ``FileRegionReader`` reads it
    /// out in buffers); ``ConnectionLifecycle`` closes it once written.
    private func sendFile(_ file: consuming CachedFile, digest: Digest, range: ByteRange?, writer: ResponseWriter) async throws {
        let size = file.size
        let bounds = try range?.resolve(size: size)  // before the hand-off: a bad range drops (closes) the file
        let (fd, finished) = file.handOff()
        defer { finished() }
        var h = self.headers(writer, digest, length: bounds.map { $0.upperBound - $0.lowerBound + 1 } ?? size)
        if let b = bounds { h.add(name: "Content-Range", value: "bytes \(b.lowerBound)-\(b.upperBound)/\(size)") }
        let status: HTTPResponseStatus = bounds == nil ? .ok : .partialContent
        let start = Int(bounds?.lowerBound ?? 0), end = Int(bounds.map { $0.upperBound + 1 } ?? size)
        let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: fd)
        writer.status = Int(status.code)
        let head = HTTPResponseHead(version: .http1_1, status: status, headers: h)
        guard end > start else {
            try? handle.close()
            try await writer.outbound.write(contentsOf: [.head(head), .end(nil)])
            return
        }
        let region = FileRegion(fileHandle: handle, readerIndex: start, endIndex: end)
        do {
            try await writer.outbound.write(contentsOf: [.head(head), .body(.fileRegion(region)), .end(nil)])
            writer.bytes += Int64(end - start)
        } catch {
            try? handle.close()  // no-op if it was already closed
            throw error
        }
    }

    /// Bytes a follower waits for before its next send, once the first bytes are out. Bigger batches
    /// (up to 4 MiB) cut a 64-client herd's wake-ups 8× but cost only 3.5 % of its time, and a follower
    /// of a slow fill then sent nothing for long enough to be closed as idle: kept at 512 KiB.
    static let followBatch: Int64 = 512 << 10

    /// Streams from a fill in progress. For a whole blob the last byte is held back until the fill is
    /// verified, so a corrupt or truncated upstream body never reaches a client as a complete
    /// response. A range waits only for its own bytes: like a ranged answer from the upstream, it
    /// cannot be verified by anyone (see README, "Ranged reads of uncached blobs").
    private func follow(_ following: BlobFill.Following, digest: Digest, range: ByteRange?, writer: ResponseWriter) async throws {
        let fill = following.fill
        writer.clientGone?.whenComplete { _ in following.release() }
        defer { following.release() }
        let first = await fill.wait(for: .head)
        let total: Int64?
        switch first.phase {
        case .failed(let error): throw error
        case .streaming(let size): total = size
        case .complete(let size): total = size
        case .connecting: throw RegistryError(.blobUnknown, "fill did not start")
        }
        writer.cache = .miss  // a fill that failed before its first byte is a refusal, not a miss
        var h = self.headers(writer, digest, length: nil)
        var start: Int64 = 0
        var endExclusive: Int64? = total
        var status = HTTPResponseStatus.ok
        if let total {
            let bounds = try range?.resolve(size: total)
            if let b = bounds {
                start = b.lowerBound
                endExclusive = b.upperBound + 1
                status = .partialContent
                h.add(name: "Content-Range", value: "bytes \(b.lowerBound)-\(b.upperBound)/\(total)")
            }
            h.add(name: "Content-Length", value: String(endExclusive! - start))
        } else {
            h.add(name: "Transfer-Encoding", value: "chunked")
        }
        try await writer.sendHead(status: status, headers: h)

        var offset = start
        while true {
            let done = endExclusive.map { offset >= $0 } ?? false
            if done { break }
            let lastByteOnly = range == nil && (endExclusive.map { offset + 1 >= $0 } ?? false)
            // The first bytes go out as soon as they arrive; after that, in batches (fewer wake-ups and sendfiles).
            let batchEnd = offset + (offset == start ? 1 : Self.followBatch)
            let batchLimit = endExclusive.map { range == nil ? $0 - 1 : $0 } ?? batchEnd
            let snap = await fill.wait(for: lastByteOnly ? .complete : .bytes(min(batchEnd, batchLimit)))
            var available = snap.written
            switch snap.phase {
            case .failed(let e): throw AbortResponse(reason: "fill failed: \(e.message)")
            case .complete(let size):
                available = size
                if endExclusive == nil { endExclusive = size }
            default:
                if let e = endExclusive, range == nil { available = min(available, e - 1) }
            }
            if let e = endExclusive { available = min(available, e) }
            if offset < available {
                // Zero-copy from the growing file: a FileRegion over a duplicate of the fill's descriptor.
                guard let fd = fill.duplicateDescriptor() else { throw AbortResponse(reason: "cannot duplicate fill descriptor") }
                try await writer.writeFileBody(fd: fd, from: offset, to: available)
                offset = available
            }
        }
        try await writer.end()
    }
}
