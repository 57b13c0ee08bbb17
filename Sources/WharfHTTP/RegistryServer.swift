import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import NIOSSL
import OCIDistribution
import ServiceLifecycle
import Synchronization
import WharfAuth
import WharfMirror
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP/1.1 front: accepts connections, parses requests, hands them to ``RegistryHandler``.
///
/// Runs as a `Service`: on graceful shutdown it stops accepting (NIO's `ServerQuiescingHelper`),
/// lets every response in flight finish on both request paths — a big hit's sendfile included — up
/// to `drainTimeout`, and closes each connection once it has nothing in flight
/// (``ConnectionLifecycle``); what is still open at the drain timeout is closed.
public final class RegistryServer: Service, Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var idleTimeout: TimeAmount = .seconds(120)
        public var drainTimeout: Duration = .seconds(10)
        public var maxHeaderBytes = 16 * 1024
        /// Answer cache hits on the event loop (``HitPath``); off only to compare the two paths.
        public var hitPath = true
        /// Serve HTTPS with this certificate (nil: plain HTTP, where blobs go out with sendfile).
        public var tls: TLSCertificate?
        /// Small blob files kept open per event loop for hits (``OpenBlobFiles``): an eighth of the
        /// open-files limit, at most 4096.
        public var openFileCacheSize = OpenFilesPerLoop.defaultCapacity()
        /// A request head must arrive whole within this time of its first byte (slow-loris).
        public var requestHeadTimeout: TimeAmount = .seconds(30)
        /// Connections held at once, in total and per client address (``ConnectionLimits``).
        public var connectionLimits = ConnectionLimits()
        /// Version and effective configuration, for the dashboard.
        public var about = ServerAbout()
        /// Who may use the admin API (`/admin/…`); nil: it answers 404.
        public var admin: AdminAuthenticator?

        public init(host: String, port: Int, tls: TLSCertificate? = nil) {
            self.host = host
            self.port = port
            self.tls = tls
        }
    }

    private let configuration: Configuration
    private let handler: RegistryHandler
    private let logger: Logger
    private let connections = ConnectionRegistry()
    private let unserved = UnservedConnections()
    private let quiesce = ServerQuiescingHelper(group: MultiThreadedEventLoopGroup.singleton)
    private let quiesced = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: Void.self)
    private let openFiles: OpenFilesPerLoop
    private let admissions: ConnectionAdmissions
    private let bound = Mutex<(port: Int?, waiters: [CheckedContinuation<Int, any Error>], serverChannel: (any Channel)?)>((nil, [], nil))

    public init(configuration: Configuration, mirror: Mirror, auth: ClientAuthenticator? = nil, edge: EdgeSettings? = nil, logger: Logger) {
        self.configuration = configuration
        self.handler = RegistryHandler(mirror: mirror, auth: auth ?? .open(logger: logger), edge: edge, about: configuration.about, admin: configuration.admin, logger: logger)
        self.logger = logger
        self.openFiles = OpenFilesPerLoop(mirror: mirror, capacity: configuration.openFileCacheSize)
        self.admissions = ConnectionAdmissions(limits: configuration.connectionLimits)
    }

    /// Connections this listener holds now (counted against ``Configuration/connectionLimits``).
    public var openConnections: Int { self.admissions.total }

    /// The port actually bound (useful with port 0); waits until the listener is up.
    public func boundPort() async throws -> Int {
        try await withCheckedThrowingContinuation { c in
            let port: Int? = self.bound.withLock { b in
                if let p = b.port { return p }
                b.waiters.append(c)
                return nil
            }
            if let port { c.resume(returning: port) }
        }
    }

    /// Begins a graceful shutdown (also triggered by ServiceLifecycle's signals).
    public func beginShutdown() {
        guard self.connections.shutdown() else { return }  // once
        let channel = self.bound.withLock { $0.serverChannel }
        if channel != nil {
            self.quiesce.initiateShutdown(promise: self.quiesced)
        } else {
            self.quiesced.succeed()  // not listening yet: nothing to drain
        }
    }

    public func run() async throws {
        let config = self.configuration
        let reads = self.handler.reads, connections = self.connections, edge = self.handler.edge
        let openFiles = self.openFiles, admissions = self.admissions, quiesce = self.quiesce, unserved = self.unserved
        // Synchronous hits need open access (authentication is async).
        let hitPath = self.handler.auth.mode == .open && config.hitPath
        let serverChannel: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
        do {
            serverChannel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelInitializer { channel in
                    // Collects accepted connections, so a graceful shutdown can quiesce each of them.
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                    }
                }
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.maxMessagesPerRead, value: 16)
                // A client that sends its request and then shuts down its side still gets the answer.
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .bind(host: config.host, port: config.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        let admission = ConnectionAdmission(admissions, channel: channel)
                        try sync.addHandler(admission)
                        if admission.isRefused, config.tls != nil { channel.close(promise: nil) }
                        // Below TLS: a handshake trickled byte by byte is on the same clock as a head.
                        let deadline = RequestHeadDeadline(timeout: config.requestHeadTimeout)
                        try sync.addHandler(deadline)
                        if let tls = config.tls {
                            try sync.addHandler(NIOSSLServerHandler(context: tls.current))
                            try sync.addHandler(FileRegionReader())  // files go out as buffers: TLS cannot sendfile
                        }
                        try sync.addHandler(IdleConnectionCloser(timeout: config.idleTimeout))
                        let front = hitPath ? HitFront(maxHeadBytes: config.maxHeaderBytes, deadline: deadline) : nil
                        if let front { try sync.addHandler(front) }
                        var limits = NIOHTTPDecoderLimitConfiguration()
                        limits.maxHeaderListSize = config.maxHeaderBytes
                        limits.maxHeaderFieldSize = config.maxHeaderBytes
                        limits.maxHeaderFieldCount = 256
                        try sync.configureHTTPServerPipeline(
                            withPipeliningAssistance: false, withErrorHandling: false, withOutboundHeaderValidation: true,
                            withEncoderConfiguration: .init(), withDecoderLimitConfiguration: limits)
                        try sync.addHandler(HeadArrivalNotifier(deadline))
                        try sync.addHandler(ProtocolErrorResponder())
                        try sync.addHandler(FileRegionCloser())
                        let lifecycle = ConnectionLifecycle()
                        if let front {
                            try sync.addHandler(HitPath(
                                reads: reads, edge: edge, front: front, lifecycle: lifecycle, openFiles: openFiles.forLoop(channel.eventLoop),
                                isShuttingDown: { connections.isShuttingDown }))
                        }
                        try sync.addHandler(lifecycle)
                        let wrapped = try NIOAsyncChannel(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(
                                isOutboundHalfClosureEnabled: true,
                                inboundType: HTTPServerRequestPart.self, outboundType: HTTPServerResponsePart.self))
                        unserved.accepted(wrapped)
                        return wrapped
                    }
                }
        } catch {
            let failure = ListenFailure(address: ListenFailure.address(host: config.host, port: config.port), error: error)
            let waiters = self.bound.withLock { b in defer { b.waiters = [] }; return b.waiters }
            waiters.forEach { $0.resume(throwing: failure) }
            self.beginShutdown()  // nothing to drain; completes the quiesce promise
            throw failure
        }
        let port = serverChannel.channel.localAddress?.port ?? config.port
        let waiters = self.bound.withLock { b in
            b.port = port
            b.serverChannel = serverChannel.channel
            defer { b.waiters = [] }
            return b.waiters
        }
        waiters.forEach { $0.resume(returning: port) }
        self.logger.info("listening", metadata: ["address": "\(config.host):\(port)", "tls": "\(config.tls != nil)"])

        do {
            try await self.serveConnections(serverChannel)
        } catch {
            await openFiles.closeAll()
            throw error
        }
        await openFiles.closeAll()
        self.logger.info("server stopped")
    }

    private func serveConnections(
        _ serverChannel: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
    ) async throws {
        let config = self.configuration
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await serverChannel.executeThenClose { inbound in
                    for try await connection in inbound {
                        self.unserved.served(connection.channel)
                        group.addTask { await self.serve(connection) }
                    }
                }
                self.unserved.listenerClosed()
                // Listener closed: every connection closes once what it has in flight is sent; the
                // drain timeout closes what is left.
                self.beginShutdown()  // no-op when the shutdown is what closed the listener
                group.addTask {
                    try? await Task.sleep(for: config.drainTimeout)
                    self.connections.closeAll()
                }
                try? await self.quiesced.futureResult.get()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.beginShutdown()
        }
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        let id = self.connections.add(connection.channel)
        let files = QueuedFiles()
        let client = ConnectionAdmissions.clientKey(connection.channel)
        let admission = await Self.admission(of: connection.channel)
        let reserveOnly = admission?.decision == .reserve
        defer {
            files.closeAll()
            self.connections.remove(id)
        }
        do {
            try await connection.executeThenClose { inbound, outbound in
                var requests = inbound.makeAsyncIterator()
                while let part = try await requests.next() {
                    guard case .head(let head) = part else { continue }
                    var bodyBytes = 0
                    reading: while let more = try await requests.next() {
                        switch more {
                        case .body(let b):
                            bodyBytes += b.readableBytes
                            if bodyBytes > 1 << 20 { throw AbortResponse(reason: "request body too large") }
                        case .end: break reading
                        case .head: throw AbortResponse(reason: "request head inside a request")
                        }
                    }
                    // Admitted into the reserve: probes (and, on the event loop, cache hits) only.
                    let refused = reserveOnly && !Self.isProbe(head.uri)
                    let keepAlive = head.isKeepAlive && !self.connections.isShuttingDown && !refused
                    let writer = ResponseWriter(
                        outbound: outbound, allocator: connection.channel.allocator, isHead: head.method == .HEAD, keepAlive: keepAlive,
                        isSecure: self.configuration.tls != nil, files: files, client: client, channel: connection.channel)
                    writer.clientGone = admission?.clientGone ?? connection.channel.closeFuture
                    if refused {
                        try await writer.sendError(RegistryError(.unavailable, "the server is at its connection limit", headers: [("Retry-After", "1")]))
                    } else {
                        try await self.handler.handle(head, writer)
                    }
                    guard keepAlive else {
                        // Closing now would drop response bytes still queued (a big FileRegion):
                        // half-close after they are written, then wait for the client to hang up.
                        outbound.finish()
                        try await connection.channel.closeFuture.get()
                        return
                    }
                }
                // The client closed its side: send what is queued, then close.
                await Self.flushQueued(connection.channel)
            }
        } catch {
            self.logger.debug("connection ended", metadata: ["reason": "\(error)"])
        }
    }
}

extension RegistryServer {
    /// Health probes, answered even on a connection admitted into the reserve.
    static func isProbe(_ uri: String) -> Bool {
        let path = uri.split(separator: "?", maxSplits: 1).first ?? ""
        return path == "/healthz" || path == "/readyz" || path == "/_ping"
    }

    /// Returns once every response byte queued on `channel` so far has been written (or failed).
    /// (Closing drops what is queued, and half-closing the output of a connection whose input is
    /// closed closes it whole.) An empty write next to the socket completes after all before it.
    static func flushQueued(_ channel: any Channel) async {
        try? await self.queuedBytesWritten(channel).get()
    }

    /// Succeeds once every response byte queued on `channel` so far has been written, fails if the connection failed first.
    static func queuedBytesWritten(_ channel: any Channel) -> EventLoopFuture<Void> {
        channel.eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
            guard let context = try? channel.pipeline.syncOperations.context(handlerType: IdleConnectionCloser.self) else {
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            let written = channel.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(NIOAny(IOData.byteBuffer(ByteBuffer())), promise: written)
            return written.futureResult
        }
    }

    /// The connection's admission: its decision and when its client has gone (one hop per connection).
    static func admission(of channel: any Channel) async -> (decision: ConnectionAdmissions.Decision, clientGone: EventLoopFuture<Void>)? {
        try? await channel.eventLoop.submit {
            let admission = try channel.pipeline.syncOperations.handler(type: ConnectionAdmission.self)
            return (admission.decision, admission.clientGone)
        }.get()
    }
}

/// Connections accepted but not yet handed to ``RegistryServer/serve(_:)``. One accepted as the
/// listener closes may never be handed over (the bootstrap drops it); an async channel dropped
/// unfinished traps, so those are finished and closed here instead.
final class UnservedConnections: Sendable {
    private typealias Wrapped = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    private let state = Mutex<(closed: Bool, pending: [ObjectIdentifier: Wrapped])>((false, [:]))

    func accepted(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) {
        let tooLate = self.state.withLock { s in
            if !s.closed { s.pending[ObjectIdentifier(connection.channel)] = connection }
            return s.closed
        }
        if tooLate { Self.discard(connection) }
    }

    func served(_ channel: any Channel) { self.state.withLock { _ = $0.pending.removeValue(forKey: ObjectIdentifier(channel)) } }

    /// Nothing will be served any more: what is pending (and anything accepted later) is closed.
    func listenerClosed() {
        let left = self.state.withLock { s in
            s.closed = true
            defer { s.pending = [:] }
            return Array(s.pending.values)
        }
        left.forEach(Self.discard)
    }

    private static func discard(_ connection: Wrapped) {
        connection.outbound.finish()
        connection.channel.close(promise: nil)
    }
}

/// Open connections, for the drain timeout's last resort, and whether a graceful shutdown began.
final class ConnectionRegistry: Sendable {
    private let channels = Mutex<(next: Int, open: [Int: any Channel])>((0, [:]))
    /// Read on every hit, so an atomic.
    private let shuttingDownFlag = Atomic<Bool>(false)
    var isShuttingDown: Bool { self.shuttingDownFlag.load(ordering: .relaxed) }

    func add(_ channel: any Channel) -> Int {
        self.channels.withLock { c in
            c.next += 1
            c.open[c.next] = channel
            return c.next
        }
    }

    func remove(_ id: Int) { self.channels.withLock { _ = $0.open.removeValue(forKey: id) } }

    /// Marks the shutdown begun; true the first time.
    func shutdown() -> Bool { !self.shuttingDownFlag.exchange(true, ordering: .relaxed) }

    func closeAll() {
        self.channels.withLock { Array($0.open.values) }.forEach { $0.close(promise: nil) }
    }
}
