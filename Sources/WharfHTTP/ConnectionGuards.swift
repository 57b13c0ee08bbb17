import NIOCore
import NIOHTTP1
import OCIDistribution
import Synchronization

/// How many connections Wharf holds, in total and per client address, with a reserve at the top
/// for health probes and cache hits (slow-loris and connection floods, issue #12).
///
/// Past `maxPerClient` a client's new connection gets `429 TOOMANYREQUESTS` and is closed; past
/// `maxTotal` everyone's does (`503 UNAVAILABLE`). The last `reserve` connections below `maxTotal`
/// are admitted in reserve mode: they get `/healthz`, `/readyz`, `/_ping` and cache hits answered
/// on the event loop, and `503` for anything that would need the upstream.
public struct ConnectionLimits: Sendable, Hashable {
    public var maxTotal: Int
    public var maxPerClient: Int
    public var reserve: Int

    public init(maxTotal: Int = 16_384, maxPerClient: Int = 512, reserve: Int? = nil) {
        self.maxTotal = max(1, maxTotal)
        self.maxPerClient = max(1, maxPerClient)
        self.reserve = min(reserve ?? max(1, maxTotal / 20), self.maxTotal - 1)
    }
}

/// Counts open connections per client address; one per server. Decisions are made at accept time.
final class ConnectionAdmissions: Sendable {
    enum Decision: Equatable {
        case admit
        /// Admitted into the reserve: health endpoints and cache hits only.
        case reserve
        case refuseClient
        case refuseAll
    }

    private struct Counts {
        var total = 0
        var perClient: [String: Int] = [:]
    }

    let limits: ConnectionLimits
    private let counts = Mutex(Counts())

    init(limits: ConnectionLimits) { self.limits = limits }

    var total: Int { self.counts.withLock { $0.total } }

    /// Admits (and counts) a connection from `client`, or refuses it (and counts nothing).
    func admit(_ client: String) -> Decision {
        self.counts.withLock { c in
            guard c.total < self.limits.maxTotal else { return .refuseAll }
            guard c.perClient[client, default: 0] < self.limits.maxPerClient else { return .refuseClient }
            c.total += 1
            c.perClient[client, default: 0] += 1
            return c.total > self.limits.maxTotal - self.limits.reserve ? .reserve : .admit
        }
    }

    func release(_ client: String) {
        self.counts.withLock { c in
            c.total -= 1
            let left = c.perClient[client, default: 1] - 1
            c.perClient[client] = left > 0 ? left : nil
        }
    }

    /// The address a connection is counted under (the IP, without the port).
    static func clientKey(_ channel: any Channel) -> String {
        channel.remoteAddress?.ipAddress ?? "unknown"
    }
}

/// First in a connection's pipeline: refuses a connection over the limits with an OCI error,
/// releases its count when it closes, and tells when the client has gone (``clientGone``).
final class ConnectionAdmission: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let admissions: ConnectionAdmissions
    private let client: String
    let decision: ConnectionAdmissions.Decision
    private let gone: EventLoopPromise<Void>

    init(_ admissions: ConnectionAdmissions, channel: any Channel) {
        self.admissions = admissions
        self.client = ConnectionAdmissions.clientKey(channel)
        self.decision = admissions.admit(self.client)
        self.gone = channel.eventLoop.makePromise()
    }

    /// Completes when the client closed its side (FIN; a half-closed client may still read, but it
    /// sends nothing more) or the connection closed: a response waiting on a slow fill stops counting
    /// as a reader then, even though no write has failed yet.
    var clientGone: EventLoopFuture<Void> { self.gone.futureResult }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { self.gone.succeed() }
        context.fireUserInboundEventTriggered(event)
    }

    func handlerRemoved(context: ChannelHandlerContext) { self.gone.succeed() }

    var isRefused: Bool { self.decision == .refuseAll || self.decision == .refuseClient }

    func channelActive(context: ChannelHandlerContext) {
        guard self.isRefused else { return context.fireChannelActive() }
        let error = self.decision == .refuseClient
            ? RegistryError(.tooManyRequests, "too many connections from this address", headers: [("Retry-After", "1")])
            : RegistryError(.unavailable, "the server is at its connection limit", headers: [("Retry-After", "1")])
        let channel = context.channel
        context.writeAndFlush(NIOAny(Self.refusal(error, allocator: channel.allocator))).whenComplete { _ in channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !self.isRefused { context.fireChannelRead(data) }  // a refused connection's requests are dropped
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !self.isRefused { self.admissions.release(self.client) }
        self.gone.succeed()
        context.fireChannelInactive()
    }

    /// A complete `Connection: close` response for `error`, as bytes (written below the HTTP encoder).
    static func refusal(_ error: RegistryError, allocator: ByteBufferAllocator) -> ByteBuffer {
        let body = error.jsonBody
        var head = "HTTP/1.1 \(error.status) \(error.status == 429 ? "Too Many Requests" : "Service Unavailable")\r\n"
        head += "Content-Type: application/json; charset=utf-8\r\n"
        for (name, value) in error.headers { head += "\(name): \(value)\r\n" }
        head += "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        return allocator.buffer(string: head + body)
    }
}
