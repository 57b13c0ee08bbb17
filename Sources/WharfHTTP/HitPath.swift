#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfAuth
import WharfMirror

/// Answers cache hits on the event loop, without a task hop: a blob GET/HEAD whose digest is cached
/// and linked to its repository, a manifest by digest, or a tag within its TTL. Everything else —
/// misses, ranges, authentication, errors — goes on to the async handler, in order: while any
/// request is with the async side, later requests on the connection follow it there.
///
/// Requests usually reach it from ``HitFront``, which reads heads from the bytes before NIO's decoder;
/// heads the decoder parsed (after the front handed it the connection) are offered here too.
///
/// Measured on the 16 KiB warm-blob load (wrk, 64 connections): the async path spent most of its CPU
/// in task switches and wake-ups between the event loop and the task pool; this path removes them.
final class HitPath: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let reads: ReadService
    private let edge: EdgeSettings?
    private let isShuttingDown: @Sendable () -> Bool
    /// Reads heads before the decoder, and where finished response bytes are written (below the HTTP encoder).
    private let front: HitFront
    /// This event loop's open descriptors of small blob files.
    private let openFiles: LoopOpenFiles
    /// Whole responses of small blobs, shared by the loops (nil: off).
    private let memory: HitMemoryCache?
    let connection = HitConnection()
    /// The connection's state (what is in flight, closing, quiescing), shared with the async side's end.
    private let lifecycle: ConnectionLifecycle
    /// Dropping the body parts of a request this handler answered.
    private var swallowing = false
    /// Access-log lines are written: read the user agent and the client's address.
    let logsRequests: Bool

    init(
        reads: ReadService, edge: EdgeSettings?, front: HitFront, lifecycle: ConnectionLifecycle, openFiles: LoopOpenFiles,
        memory: HitMemoryCache? = nil, isShuttingDown: @escaping @Sendable () -> Bool
    ) {
        self.memory = memory
        self.front = front
        self.lifecycle = lifecycle
        self.openFiles = openFiles
        self.reads = reads
        self.edge = edge
        self.isShuttingDown = isShuttingDown
        self.logsRequests = reads.outcomes.logsRequests
        front.hitPath = self
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            if self.connection.triedHeads > 0 {
                self.connection.triedHeads -= 1  // the front offered it already
            } else if let request = HitRequest(head), self.tryAnswer(request) {
                self.swallowing = true
                return
            }
            self.swallowing = false
            context.fireChannelRead(data)
        case .body:
            if !self.swallowing { context.fireChannelRead(data) }
        case .end:
            if self.swallowing { self.swallowing = false } else { context.fireChannelRead(data) }
        }
    }

    /// Nothing more is answered on this connection (a response closed it, or it is quiescing).
    var isEnding: Bool { self.lifecycle.isEnding }

    /// Answers `request` if it is a cache hit and nothing is ahead of it on the connection.
    func tryAnswer(_ request: HitRequest) -> Bool {
        guard self.lifecycle.mayAnswerOnLoop, !self.isShuttingDown(), let outlet = self.front.context else { return false }
        return self.answer(request, outlet: outlet)
    }

    // MARK: Answering

    /// Writes the whole response and returns true, or returns false to leave the request to the async side.
    private func answer(_ request: HitRequest, outlet: ChannelHandlerContext) -> Bool {
        guard !request.needsAsync, let target = try? RequestRouter.parse(uri: request.uri) else { return false }
        switch target.route {
        case .blob(let name, let digest): return self.answerBlob(request, target, name: name, digest: digest, outlet: outlet)
        case .manifest(let name, let reference): return self.answerManifest(request, target, name: name, reference: reference, outlet: outlet)
        default: return false
        }
    }

    private func answerBlob(_ request: HitRequest, _ target: ParsedTarget, name rawName: String, digest rawDigest: String, outlet: ChannelHandlerContext) -> Bool {
        let started = ContinuousClock.now
        guard let namespace = Self.namespace(of: target) else { return false }
        let keepAlive = request.keepAlive, isHead = request.isHead
        if let edge = self.edge {
            // An edge redirects blob GETs; a cache serves only signed ones (a bad one gets its error from the async side).
            if edge.redirectBlobsTo != nil, !isHead { return false }
            if edge.requireSignedBlobs,
               EdgeRedirect.verdict(edge, method: isHead ? "HEAD" : "GET", name: rawName, digest: rawDigest, target: target, namespace: namespace) != .valid {
                return false
            }
        }
        guard let name = try? RepositoryName(parsing: rawName), let digest = try? Digest(parsing: rawDigest),
              let routed = self.reads.routeOpen(name, namespace: namespace)
        else { return false }
        let query = BlobQuery(digest: digest, isHead: isHead, range: nil, identity: nil, client: "")
        // Only a keep-alive GET without a namespace gets the response the memory cache keeps; the
        // mark is taken before the index and the file are asked.
        let memoryMark = keepAlive && !isHead && namespace == nil ? self.memory?.mark : nil
        guard let answer = self.reads.cachedBlob(query, routed, files: self.openFiles) else { return false }
        switch consume answer {
        case .head(let size, _):
            // Recorded before the write: a client that sees the connection close must see the stats too.
            self.record(request, routed, kind: .blob, status: 200, bytes: 0, started: started, channel: outlet.channel)
            var response = Self.blobHead(digest, length: size ?? 0, namespace: namespace, allocator: outlet.channel.allocator)
            response.finish(keepAlive: keepAlive)
            self.send(outlet, response.buffer, keepAlive: keepAlive)
        case .file(let file):
            self.sendFile(file, request, routed, digest: digest, namespace: namespace, outlet: outlet, started: started, memoryMark: memoryMark)
        default:
            preconditionFailure("cachedBlob answers hits only")
        }
        return true
    }

    private func sendFile(
        _ file: consuming CachedFile, _ request: HitRequest, _ routed: RoutedRequest, digest: Digest, namespace: String?,
        outlet: ChannelHandlerContext, started: ContinuousClock.Instant, memoryMark: UInt64?
    ) {
        let keepAlive = request.keepAlive, size = file.size
        if file.isBorrowed {
            if memoryMark != nil, let kept = self.memory?.response(for: digest, bodySize: size) {
                self.reads.stats.memoryHits.add()
                self.record(request, routed, kind: .blob, status: 200, bytes: size, started: started, channel: outlet.channel)
                self.send(outlet, kept, keepAlive: keepAlive)
                return
            }
            // Small: head and body in one buffer, one write.
            var response = Self.blobHead(
                digest, length: size, namespace: namespace, allocator: outlet.channel.allocator, bodyCapacity: Int(size))
            response.finish(keepAlive: keepAlive)
            guard response.appendFile(file.descriptor, count: Int(size)) else {
                // The file shrank under us (it cannot: blobs are immutable); fail the connection rather than send less.
                self.record(request, routed, kind: .blob, status: 200, bytes: 0, aborted: true, started: started, channel: outlet.channel)
                outlet.close(promise: nil)
                return
            }
            self.record(request, routed, kind: .blob, status: 200, bytes: size, started: started, channel: outlet.channel)
            if let memory = self.memory, let memoryMark {
                memory.store(response.buffer, for: digest, bodySize: size, asOf: memoryMark)
            }
            self.send(outlet, response.buffer, keepAlive: keepAlive)
            return
        }
        // Big: the head, then the file with sendfile; the file stays marked as served until written.
        var response = Self.blobHead(digest, length: size, namespace: namespace, allocator: outlet.channel.allocator)
        response.finish(keepAlive: keepAlive)
        if !keepAlive { self.lifecycle.responseWithoutKeepAlive() }
        let (fd, finished) = file.handOff()
        let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: fd)
        let region = FileRegion(fileHandle: handle, readerIndex: 0, endIndex: Int(size))
        outlet.write(NIOAny(IOData.byteBuffer(response.buffer)), promise: nil)
        let done = outlet.eventLoop.makePromise(of: Void.self)
        self.lifecycle.hitSendStarted()
        outlet.writeAndFlush(NIOAny(IOData.fileRegion(region)), promise: done)
        let channel = outlet.channel, lifecycle = self.lifecycle
        done.futureResult.assumeIsolated().whenComplete { result in
            try? handle.close()
            finished()
            // Recorded once sendfile is done, before the connection may close: a transfer the
            // client cut off is logged as aborted, and the duration covers the whole transfer.
            let aborted = if case .failure = result { true } else { false }
            self.record(request, routed, kind: .blob, status: 200, bytes: size, aborted: aborted, started: started, channel: channel)
            if keepAlive { lifecycle.hitSendFinished() } else { channel.close(promise: nil) }
        }
    }

    private func answerManifest(
        _ request: HitRequest, _ target: ParsedTarget, name rawName: String, reference rawReference: String, outlet: ChannelHandlerContext
    ) -> Bool {
        let started = ContinuousClock.now
        guard let namespace = Self.namespace(of: target) else { return false }
        let keepAlive = request.keepAlive, isHead = request.isHead
        guard let name = try? RepositoryName(parsing: rawName), let reference = try? Reference(parsing: rawReference),
              let routed = self.reads.routeOpen(name, namespace: namespace)
        else { return false }
        let query = ManifestQuery(
            reference: reference, accept: self.connection.acceptSet(request.accept), isHead: isHead, identity: nil, client: "")
        guard let manifest = self.reads.cachedManifest(query, routed) else { return false }
        let notModified = ManifestEndpoint.matches(ifNoneMatch: request.ifNoneMatch, manifest.digest)
        let withBody = !notModified && !isHead
        var response = HitResponseHead(
            status: notModified ? "304 Not Modified" : "200 OK", allocator: outlet.channel.allocator,
            bodyCapacity: withBody ? manifest.bytes.count : 0)
        response.add("Content-Type", manifest.mediaType)  // validated when stored and when read
        response.add("X-Content-Type-Options", "nosniff")  // a manifest is data, never a page to render
        response.add("Docker-Content-Digest", manifest.digest)
        response.add("ETag", manifest.digest, quoted: true)
        response.add("Content-Length", Int64(manifest.bytes.count))
        if let namespace { response.add("OCI-Namespace", namespace) }
        response.finish(keepAlive: keepAlive)
        if withBody { response.append(manifest.bytes) }
        self.record(
            request, routed, kind: .manifest, status: notModified ? 304 : 200, bytes: withBody ? Int64(manifest.bytes.count) : 0,
            isPull: !isHead && !rawReference.contains(":"), started: started, channel: outlet.channel)  // a pull starts with a tag; children by digest are part of it
        self.send(outlet, response.buffer, keepAlive: keepAlive)
        return true
    }

    /// The request's `ns` (`.some(nil)` when it has none); nil for a malformed one, which the async side refuses.
    private static func namespace(of target: ParsedTarget) -> String?? {
        do { return .some(try RequestRouter.namespace(of: target)) } catch { return nil }
    }

    private static func blobHead(
        _ digest: Digest, length: Int64, namespace: String?, allocator: ByteBufferAllocator, bodyCapacity: Int = 0
    ) -> HitResponseHead {
        var response = HitResponseHead(status: "200 OK", allocator: allocator, bodyCapacity: bodyCapacity)
        response.add("Content-Type", constant: "application/octet-stream")
        response.add("Docker-Content-Digest", digest)
        response.add("Accept-Ranges", constant: "bytes")
        response.add("ETag", digest, quoted: true)
        response.add("Cache-Control", constant: "max-age=31536000")
        response.add("Content-Length", length)
        if let namespace { response.add("OCI-Namespace", namespace) }
        return response
    }

    /// Queues a finished response; flushed at the end of the read batch, or now (then closed) when the connection ends.
    private func send(_ outlet: ChannelHandlerContext, _ bytes: ByteBuffer, keepAlive: Bool) {
        if keepAlive {
            outlet.write(NIOAny(IOData.byteBuffer(bytes)), promise: nil)
            self.connection.unflushed = true
        } else {
            self.lifecycle.responseWithoutKeepAlive()
            let channel = outlet.channel
            outlet.writeAndFlush(NIOAny(IOData.byteBuffer(bytes))).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    /// The request's outcome, recorded when its response is queued (a client that sees the answer sees
    /// the stats), or for a file sent with sendfile when that is done.
    private func record(
        _ request: HitRequest, _ routed: RoutedRequest, kind: MirrorStats.RequestKind, status: Int, bytes: Int64, aborted: Bool = false,
        isPull: Bool = false, started: ContinuousClock.Instant, channel: any Channel
    ) {
        self.reads.outcomes.record(RequestOutcome(
            kind: kind, method: request.isHead ? "HEAD" : "GET", path: request.uri,
            client: self.logsRequests ? self.connection.client(channel) : "-", userAgent: request.userAgent, upstream: routed.upstreamName,
            repository: routed.repository, cache: .hit, status: status, bytes: bytes, aborted: aborted, isPull: isPull,
            duration: ContinuousClock.now - started))
    }
}

extension HitRequest {
    /// The parts of a decoded head the hit path reads; nil for methods other than GET and HEAD.
    init?(_ head: HTTPRequestHead) {
        guard head.method == .GET || head.method == .HEAD else { return nil }
        self.init(
            isHead: head.method == .HEAD, uri: head.uri, keepAlive: head.isKeepAlive,
            needsAsync: head.headers.contains(name: "range") || head.headers.contains(name: "authorization"),
            accept: head.headers["accept"], ifNoneMatch: head.headers["if-none-match"], userAgent: head.headers.first(name: "user-agent"))
    }
}
