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
/// A connection is its NIO pipeline only: cache hits are answered on the event loop (``HitPath``),
/// and a task is started for each request that needs the async side (``ConnectionLifecycle``,
/// ``AsyncSideJob``). An idle connection holds no task.
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
        /// Small blobs' whole responses kept in memory for hits, shared by the listeners of one
        /// mirror (nil: none).
        public var memoryCache: HitMemoryCache?
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
    /// The tasks answering requests on the async side.
    private let asyncSide = AsyncSideTasks()
    private let quiesce = ServerQuiescingHelper(group: MultiThreadedEventLoopGroup.singleton)
    private let quiesced = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: Void.self)
    private let openFiles: OpenFilesPerLoop
    private let memory: HitMemoryCache?
    private let admissions: ConnectionAdmissions
    private let bound = Mutex<(port: Int?, waiters: [CheckedContinuation<Int, any Error>], serverChannel: (any Channel)?)>((nil, [], nil))

    public init(configuration: Configuration, mirror: Mirror, auth: ClientAuthenticator? = nil, edge: EdgeSettings? = nil, logger: Logger) {
        self.configuration = configuration
        self.handler = RegistryHandler(mirror: mirror, auth: auth ?? .open(logger: logger), edge: edge, about: configuration.about, admin: configuration.admin, logger: logger)
        self.logger = logger
        self.openFiles = OpenFilesPerLoop(mirror: mirror, capacity: configuration.openFileCacheSize)
        self.memory = configuration.memoryCache
        self.admissions = ConnectionAdmissions(limits: configuration.connectionLimits)
    }

    /// Connections this listener holds now (counted against ``Configuration/connectionLimits``).
    public var openConnections: Int { self.admissions.total }

    /// Small blobs' responses kept in memory now (``Configuration/memoryCache``), and their bytes.
    public var memoryCacheUsage: (entries: Int, bytes: Int) { self.memory?.usage ?? (0, 0) }

    /// Tasks answering requests on the async side now (at most one per connection), and how many
    /// were started since the server started (one per request). A connection whose requests are all
    /// cache hits answered on the event loop never starts one.
    public var asyncSideTasks: (running: Int, started: Int) { self.asyncSide.counts }

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
        self.asyncSide.setPriority(Task.currentPriority)
        let reads = self.handler.reads, connections = self.connections, edge = self.handler.edge
        let openFiles = self.openFiles, memory = self.memory, admissions = self.admissions, quiesce = self.quiesce
        let sweeps = LoopSweeps(headTimeout: config.requestHeadTimeout, idleTimeout: config.idleTimeout)
        let answer: @Sendable (AsyncSideJob) -> Void = { [asyncSide = self.asyncSide] job in
            // After the drain every connection is closed; a job that comes anyway closes its own.
            if !asyncSide.start({ await self.answer(job) }) { job.failed() }
        }
        // Synchronous hits need open access (authentication is async).
        let hitPath = self.handler.auth.mode == .open && config.hitPath
        let listener: any Channel
        do {
            listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
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
                // The channel keeps its receive buffer between reads: 1 KiB (NIO's default starts at
                // 2 KiB) holds a typical request head, and an idle connection keeps no more. It grows
                // for bigger reads (a long head, a pipeline).
                .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 1024, maximum: 65536))
                // A client that sends its request and then shuts down its side still gets the answer.
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        let admission = ConnectionAdmission(admissions, channel: channel)
                        try sync.addHandler(admission)
                        if admission.isRefused {
                            if config.tls != nil { channel.close(promise: nil) }
                        } else {
                            connections.add(channel)
                        }
                        // Below TLS: a handshake trickled byte by byte is on the same clock as a head.
                        let timers = ConnectionTimers(
                            headTimeout: config.requestHeadTimeout, idleTimeout: config.idleTimeout, sweep: sweeps.forLoop(channel.eventLoop))
                        try sync.addHandler(timers)
                        if let tls = config.tls {
                            try sync.addHandler(PlainHTTPOnTLSPort())  // a plain request gets a 400 saying so, not an EOF
                            try sync.addHandler(NIOSSLServerHandler(context: tls.current))
                            try sync.addHandler(FileRegionReader())  // files go out as buffers: TLS cannot sendfile
                        }
                        let front = hitPath ? HitFront(maxHeadBytes: config.maxHeaderBytes, deadline: timers) : nil
                        if let front { try sync.addHandler(front) }
                        let feed = DecoderFeed()  // decoded requests are ~15× their bytes: decode only what can wait
                        try sync.addHandler(feed)
                        var limits = NIOHTTPDecoderLimitConfiguration()
                        limits.maxHeaderListSize = config.maxHeaderBytes
                        limits.maxHeaderFieldSize = config.maxHeaderBytes
                        limits.maxHeaderFieldCount = 256
                        try sync.configureHTTPServerPipeline(
                            withPipeliningAssistance: false, withErrorHandling: false, withOutboundHeaderValidation: true,
                            withEncoderConfiguration: .init(), withDecoderLimitConfiguration: limits)
                        let guard_ = DecodedRequestGuard(timers)
                        try sync.addHandler(guard_)
                        let lifecycle = ConnectionLifecycle(
                            admission: .init(reserveOnly: admission.decision == .reserve, clientGone: admission.clientGone),
                            startTask: answer)
                        lifecycle.feed = feed
                        feed.lifecycle = lifecycle
                        guard_.feed = feed
                        guard_.lifecycle = lifecycle
                        if let front {
                            try sync.addHandler(HitPath(
                                reads: reads, edge: edge, front: front, lifecycle: lifecycle, openFiles: openFiles.forLoop(channel.eventLoop),
                                memory: memory,
                                isShuttingDown: { connections.isShuttingDown }))
                        }
                        try sync.addHandler(lifecycle)
                    }
                }
                .bind(host: config.host, port: config.port).get()
        } catch {
            let failure = ListenFailure(address: ListenFailure.address(host: config.host, port: config.port), error: error)
            let waiters = self.bound.withLock { b in defer { b.waiters = [] }; return b.waiters }
            waiters.forEach { $0.resume(throwing: failure) }
            self.beginShutdown()  // nothing to drain; completes the quiesce promise
            throw failure
        }
        let port = listener.localAddress?.port ?? config.port
        let waiters = self.bound.withLock { b in
            b.port = port
            b.serverChannel = listener
            defer { b.waiters = [] }
            return b.waiters
        }
        waiters.forEach { $0.resume(returning: port) }
        self.logger.info("listening", metadata: ["address": "\(config.host):\(port)", "tls": "\(config.tls != nil)"])

        await self.serveConnections(listener)
        await openFiles.closeAll()
        self.logger.info("server stopped")
    }

    private func serveConnections(_ listener: any Channel) async {
        let config = self.configuration
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                try? await listener.closeFuture.get()
            } onCancel: {
                self.beginShutdown()
                self.connections.closeAll()
            }
            // Listener closed: every connection closes once what it has in flight is sent; the drain
            // timeout closes what is left.
            self.beginShutdown()  // no-op when the shutdown is what closed the listener
            await withDiscardingTaskGroup { drain in
                drain.addTask {
                    try? await Task.sleep(for: config.drainTimeout)
                    self.connections.closeAll()
                }
                try? await self.quiesced.futureResult.get()
                drain.cancelAll()
            }
            // Every connection is closed: tasks still answering (a request waiting on an upstream) stop.
            await self.asyncSide.cancelAndWait()
        } onGracefulShutdown: {
            self.beginShutdown()
        }
    }

    /// Answers `job`'s request on the async side.
    private func answer(_ job: AsyncSideJob) async {
        let channel = job.channel, head = job.request.head
        // Admitted into the reserve: probes (and, on the event loop, cache hits) only.
        let refused = job.admission.reserveOnly && !Self.isProbe(head.uri)
        let keepAlive = head.isKeepAlive && !self.connections.isShuttingDown && !refused
        do {
            if job.request.bodyTooLarge { throw AbortResponse(reason: "request body too large") }
            let writer = ResponseWriter(
                outbound: job.outbound, allocator: channel.allocator, isHead: head.method == .HEAD, keepAlive: keepAlive,
                isSecure: self.configuration.tls != nil, client: ConnectionAdmissions.clientKey(channel), channel: channel)
            writer.clientGone = job.clientGone
            if refused {
                try await writer.sendError(RegistryError(.unavailable, "the server is at its connection limit", headers: [("Retry-After", "1")]))
            } else {
                try await self.handler.handle(head, writer)
            }
            job.answered(keepAlive: keepAlive)
        } catch {
            self.logger.debug("connection ended", metadata: ["reason": "\(error)"])
            job.failed()
        }
    }
}

extension RegistryServer {
    /// Health probes, answered even on a connection admitted into the reserve.
    static func isProbe(_ uri: String) -> Bool {
        let path = uri.split(separator: "?", maxSplits: 1).first ?? ""
        return path == "/healthz" || path == "/readyz" || path == "/_ping"
    }

    /// Succeeds once every response byte queued on `channel` so far has been written, fails if the
    /// connection failed first. An empty write right above TLS (and ``FileRegionReader``, which holds
    /// writes behind a file it reads out) completes after every write before it.
    static func queuedBytesWritten(_ channel: any Channel) -> EventLoopFuture<Void> {
        channel.eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
            let sync = channel.pipeline.syncOperations
            guard let context = (try? sync.context(handlerType: HitFront.self)) ?? (try? sync.context(handlerType: HTTPResponseEncoder.self)) else {
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            let written = channel.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(NIOAny(IOData.byteBuffer(ByteBuffer())), promise: written)
            return written.futureResult
        }
    }
}

/// Open connections, for the drain timeout's last resort, and whether a graceful shutdown began.
final class ConnectionRegistry: Sendable {
    private let channels = Mutex<[ObjectIdentifier: any Channel]>([:])
    /// Read on every hit, so an atomic.
    private let shuttingDownFlag = Atomic<Bool>(false)
    var isShuttingDown: Bool { self.shuttingDownFlag.load(ordering: .relaxed) }

    /// Holds `channel` until it closes.
    func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        self.channels.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { _ in self.channels.withLock { _ = $0.removeValue(forKey: id) } }
    }

    /// Marks the shutdown begun; true the first time.
    func shutdown() -> Bool { !self.shuttingDownFlag.exchange(true, ordering: .relaxed) }

    func closeAll() {
        self.channels.withLock { Array($0.values) }.forEach { $0.close(promise: nil) }
    }
}

/// The tasks answering requests on the async side: one per request, started from the event loops,
/// so they are not children of the server's task. They run at its priority (``setPriority(_:)``; a
/// task made on an event loop thread would get `.medium` and wait behind the server's other work),
/// and a shutdown cancels and awaits those still running once every connection is closed.
final class AsyncSideTasks: Sendable {
    private struct State {
        var next = 0
        var running: [Int: Task<Void, Never>] = [:]
        var started = 0
        var stopped = false
        var priority: TaskPriority?
    }

    private let state = Mutex(State())

    /// The priority of the tasks started from now on: the server task's.
    func setPriority(_ priority: TaskPriority) { self.state.withLock { $0.priority = priority } }

    var counts: (running: Int, started: Int) { self.state.withLock { ($0.running.count, $0.started) } }

    /// Runs `operation` as a task; false (and nothing runs) once ``cancelAndWait()`` was called.
    func start(_ operation: @escaping @Sendable () async -> Void) -> Bool {
        self.state.withLock { s in
            guard !s.stopped else { return false }
            let id = s.next
            s.next += 1
            s.started += 1
            // The task removes itself; it cannot get the lock before its entry is in.
            s.running[id] = Task(priority: s.priority) {
                await operation()
                self.state.withLock { _ = $0.running.removeValue(forKey: id) }
            }
            return true
        }
    }

    /// Starts no more tasks, cancels those running and returns once they have ended.
    func cancelAndWait() async {
        let running = self.state.withLock { s in
            s.stopped = true
            return Array(s.running.values)
        }
        running.forEach { $0.cancel() }
        for task in running { await task.value }
    }
}
