#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfAuth
import WharfMirror
import WharfStorage
import WharfUpstream

/// `GET`/`HEAD /v2/<name>/blobs/<digest>`: hits go out with sendfile; misses follow a ``BlobFill``.
struct BlobEndpoint: Sendable {
    let mirror: Mirror
    let access: RequestAccess
    var edge: EdgeSettings? = nil

    func serve(name rawName: String, digest rawDigest: String, request: HTTPRequestHead, writer: ResponseWriter) async throws {
        let name = try RepositoryName(parsing: rawName)
        let digest = try Digest(parsing: rawDigest)
        let mark = self.mirror.serving.markServing(digest)  // the evictor spares blobs being served
        defer { mark.release() }
        let range = writer.isHead ? nil : try request.headers.first(name: "range").flatMap { try ByteRange(header: $0) }
        let routed = try await self.access.route(name, writer)
        let upstream = routed.client, repository = routed.repository
        // Known in this repository (its manifests named it, or the upstream confirmed it): no more checks.
        let found = try? self.mirror.index.blob(digest, linkedTo: upstream.configuration.name, repository: repository)
        let linked = found?.linked ?? false
        if found?.record == nil || !linked {
            if writer.isHead, found?.record == nil, self.mirror.blobHeadMisses.contains(Self.headMissKey(upstream, repository, digest)) {
                self.mirror.stats.negativeHits.add()
                throw RegistryError(.blobUnknown, "blob unknown upstream (cached answer)")
            }
            // The answer needs the upstream (a fill, a HEAD, a confirmation): counted per client.
            try self.mirror.lookups.charge(writer.client)
        }
        if let edge = self.edge, let cache = edge.redirectBlobsTo, !writer.isHead {
            // Edge: the pull is authorized here; the bytes come from the cache the signed URL names.
            if !linked {
                try await self.mirror.linkGate.confirm(digest, kind: .blob, upstream: upstream, repository: repository, identity: writer.identity)
            }
            try await EdgeRedirect.send(edge, cache: cache, name: rawName, digest: digest.description, writer: writer)
            return
        }

        if let record = found?.record {
            if !linked {
                try await self.mirror.linkGate.confirm(digest, kind: .blob, upstream: upstream, repository: repository, identity: writer.identity)
            }
            if writer.isHead {
                writer.outcome = "hit"
                self.mirror.stats.blobHits.add()
                try await writer.send(status: .ok, headers: self.headers(writer, digest, length: record.size), body: nil)
                return
            }
            if let file = self.mirror.store.open(digest) {
                guard file.size == record.size else {
                    close(file.fd)  // a damaged file: fall through and fetch it again
                    return try await self.serveMiss(digest, routed, linked: true, range: range, writer: writer)
                }
                self.mirror.index.touch(digest)
                try await self.sendHit(file, digest: digest, repository: repository, range: range, writer: writer)
                return
            }
        }
        if writer.isHead {
            try await self.headMiss(upstream: upstream, repository: repository, digest: digest, writer: writer)
            return
        }
        try await self.serveMiss(digest, routed, linked: linked, range: range, writer: writer)
    }

    /// Not (usable) in the cache: join or start the fill; it may also have just completed. Bytes
    /// that came through another repository are served only once this repository is confirmed.
    private func serveMiss(_ digest: Digest, _ routed: RoutedRequest, linked: Bool, range: ByteRange?, writer: ResponseWriter) async throws {
        let upstream = routed.client, repository = routed.repository
        let source: BlobFills.Source
        do {
            source = try self.mirror.fills.source(for: digest, upstream: upstream, repository: repository, identity: writer.identity)
        } catch {
            guard BlobFills.isCannotKeep(error) else { throw error }
            return try await self.relay(digest, routed, range: range, writer: writer)
        }
        switch source {
        case .cached:
            if !linked {
                try await self.mirror.linkGate.confirm(digest, kind: .blob, upstream: upstream, repository: repository, identity: writer.identity)
            }
            guard let file = self.mirror.store.open(digest) else { throw RegistryError(.blobUnknown, "blob vanished from the cache") }
            try await self.sendHit(file, digest: digest, repository: repository, range: range, writer: writer)
        case .fill(let fill):
            if !linked, fill.origin != (upstream.configuration.name, repository) {
                try await self.mirror.linkGate.confirm(digest, kind: .blob, upstream: upstream, repository: repository, identity: writer.identity)
            }
            writer.outcome = "miss"
            self.mirror.stats.blobMisses.add()
            defer {
                self.mirror.stats.bytesFromFills.add(Int(writer.bytes))
                self.mirror.stats.repository(repository, bytes: Int(writer.bytes))
            }
            do {
                try await self.follow(fill, digest: digest, range: range, writer: writer)
            } catch {
                guard let e = error as? RegistryError, BlobFills.isCannotKeep(e), writer.status == 0 else { throw error }
                try await self.relay(digest, routed, range: range, writer: writer)
            }
        }
    }

    /// The cache cannot keep this blob (disk full): stream it from the upstream uncached, verified
    /// (``BlobRelay``), or answer 503 before any head when even that is impossible.
    private func relay(_ digest: Digest, _ routed: RoutedRequest, range: ByteRange?, writer: ResponseWriter) async throws {
        guard range == nil else { throw RegistryError(.unavailable, "the cache cannot store this blob right now; retry without Range") }
        let relay = try await BlobRelay.open(
            digest, upstream: routed.client, repository: routed.repository, identity: writer.identity, stats: self.mirror.stats)
        writer.outcome = "relay"
        var h = self.headers(writer, digest, length: relay.size)
        if relay.size == nil { h.add(name: "Transfer-Encoding", value: "chunked") }
        try await writer.sendHead(status: .ok, headers: h)
        do {
            try await relay.stream { chunk in try await writer.writeBody(.byteBuffer(chunk)) }
        } catch {
            throw AbortResponse(reason: "uncached relay failed: \(error)")
        }
        try await writer.end()
        self.mirror.stats.repository(routed.repository, bytes: Int(writer.bytes))
    }

    private func sendHit(_ file: (fd: Int32, size: Int64), digest: Digest, repository: String, range: ByteRange?, writer: ResponseWriter) async throws {
        writer.outcome = "hit"
        self.mirror.stats.blobHits.add()
        try await self.sendFile(file, digest: digest, range: range, writer: writer)
        self.mirror.stats.bytesFromDisk.add(Int(writer.bytes))
        self.mirror.stats.repository(repository, bytes: Int(writer.bytes))
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

    /// Zero-copy: the file goes out as a `FileRegion` (sendfile); ``FileRegionCloser`` closes it.
    /// Over TLS it goes out in buffers (see ``ResponseWriter/writeFileBody(fd:from:to:)``).
    private func sendFile(_ file: (fd: Int32, size: Int64), digest: Digest, range: ByteRange?, writer: ResponseWriter) async throws {
        let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: file.fd)
        writer.files.track(handle)
        let bounds: ClosedRange<Int64>?
        do {
            bounds = try range?.resolve(size: file.size)
        } catch {
            try? handle.close()
            throw error
        }
        if writer.isSecure {
            let fd = try handle.takeDescriptorOwnership()
            try await self.sendFileBuffered(fd: fd, size: file.size, digest: digest, bounds: bounds, writer: writer)
            return
        }
        var h = self.headers(writer, digest, length: bounds.map { $0.upperBound - $0.lowerBound + 1 } ?? file.size)
        let status: HTTPResponseStatus = bounds == nil ? .ok : .partialContent
        if let b = bounds { h.add(name: "Content-Range", value: "bytes \(b.lowerBound)-\(b.upperBound)/\(file.size)") }
        let start = Int(bounds?.lowerBound ?? 0), end = Int(bounds.map { $0.upperBound + 1 } ?? file.size)
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
            try? handle.close()  // no-op if the closer already closed it
            throw error
        }
    }

    /// Bytes a follower waits for before its next send, once the first bytes are out.
    static let followBatch: Int64 = 512 << 10

    /// Streams from a fill in progress. The last byte is held back until the fill is verified, so a
    /// corrupt or truncated upstream body never reaches a client as a complete response.
    private func follow(_ fill: BlobFill, digest: Digest, range: ByteRange?, writer: ResponseWriter) async throws {
        let following = fill.attach()
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
            let lastByteOnly = endExclusive.map { offset + 1 >= $0 } ?? false
            // The first bytes go out as soon as they arrive; after that, in batches (fewer wake-ups and sendfiles).
            let batchEnd = offset + (offset == start ? 1 : Self.followBatch)
            let snap = await fill.wait(for: lastByteOnly ? .complete : .bytes(min(batchEnd, endExclusive.map { $0 - 1 } ?? batchEnd)))
            var available = snap.written
            switch snap.phase {
            case .failed(let e): throw AbortResponse(reason: "fill failed: \(e.message)")
            case .complete(let size):
                available = size
                if endExclusive == nil { endExclusive = size }
            default:
                if let e = endExclusive { available = min(available, e - 1) }
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

    private func sendFileBuffered(fd: Int32, size: Int64, digest: Digest, bounds: ClosedRange<Int64>?, writer: ResponseWriter) async throws {
        var h = self.headers(writer, digest, length: bounds.map { $0.upperBound - $0.lowerBound + 1 } ?? size)
        if let b = bounds { h.add(name: "Content-Range", value: "bytes \(b.lowerBound)-\(b.upperBound)/\(size)") }
        do {
            try await writer.sendHead(status: bounds == nil ? .ok : .partialContent, headers: h)
        } catch {
            close(fd)
            throw error
        }
        try await writer.writeFileBody(fd: fd, from: bounds?.lowerBound ?? 0, to: bounds.map { $0.upperBound + 1 } ?? size)
        try await writer.end()
    }

    private static func headMissKey(_ upstream: UpstreamClient, _ repository: String, _ digest: Digest) -> String {
        "\(upstream.configuration.name)\u{0}\(repository)\u{0}\(digest.hex)"
    }

    private func headMiss(upstream: UpstreamClient, repository: String, digest: Digest, writer: ResponseWriter) async throws {
        let response: UpstreamResponse
        self.mirror.stats.upstreamRequests.add()
        do {
            response = try await upstream.send(.HEAD, repository: repository, path: "blobs/\(digest)", as: writer.identity)
        } catch {
            throw RegistryError(.blobUnknown, "upstream unreachable")
        }
        guard response.status == 200 else {
            if response.status == 404 { self.mirror.blobHeadMisses.insert(Self.headMissKey(upstream, repository, digest)) }
            throw RegistryError(.blobUnknown, "blob unknown upstream (status \(response.status))")
        }
        writer.outcome = "miss"
        self.mirror.stats.blobMisses.add()
        try await writer.send(status: .ok, headers: self.headers(writer, digest, length: response.contentLength), body: nil)
    }
}
