import NIOCore
import Synchronization

/// One connection's two clocks, as a value: a request head must arrive whole within `headTimeout`
/// of its first byte, however slowly it trickles (slow-loris: the idle timeout alone lets one byte
/// every few seconds hold a connection forever), and a connection that makes no progress for
/// `idleTimeout` — nothing read, nothing written, none of its queued response bytes sent — is
/// closed. No I/O and no timer of its own: ``ConnectionTimers`` feeds it the connection's events,
/// and its event loop's ``LoopSweep`` asks it every few seconds whether to close.
///
/// The idle rule counts queued bytes that drain as progress: a big blob going out to a slow client
/// as one sendfile is one write, and must not look idle while it is being sent.
struct ConnectionDeadlines {
    let headTimeout: TimeAmount
    let idleTimeout: TimeAmount
    /// When the first byte of the head being read arrived; nil between heads.
    private(set) var headStarted: NIODeadline?
    /// Something was read or written since the last check.
    private var progressed = false
    /// The check that last saw progress (or the start).
    private var lastProgress: NIODeadline
    private var lastQueuedBytes = 0

    init(headTimeout: TimeAmount, idleTimeout: TimeAmount, now: NIODeadline) {
        self.headTimeout = headTimeout
        self.idleTimeout = idleTimeout
        self.lastProgress = now
    }

    /// Bytes arrived; `now` is read only when they start a head (one clock read per read batch, no timer per request).
    mutating func read(now: () -> NIODeadline) {
        self.progressed = true
        if self.headStarted == nil { self.headStarted = now() }
    }

    mutating func wrote() { self.progressed = true }

    /// A whole head arrived: the bytes that follow (a body, or the next head) start a new clock.
    mutating func headCompleted() { self.headStarted = nil }

    /// The connection stopped reading heads (backpressure): no head clock until it reads again.
    mutating func paused() { self.headStarted = nil }

    /// The periodic check at `now`, with the bytes queued for the socket: true if the connection
    /// must be closed (a head too slow, or no progress for the idle period).
    mutating func check(now: NIODeadline, queuedBytes: Int) -> Bool {
        if let started = self.headStarted, now - started >= self.headTimeout { return true }
        if self.progressed || queuedBytes != self.lastQueuedBytes { self.lastProgress = now }
        self.progressed = false
        self.lastQueuedBytes = queuedBytes
        return now - self.lastProgress >= self.idleTimeout
    }
}

/// Second in a connection's pipeline (below TLS: a handshake trickled byte by byte is on the same
/// clock as a head), where it sees every byte read and every write: carries out the connection's
/// ``ConnectionDeadlines``. ``HitFront`` and ``DecodedRequestGuard`` tell it when a head is whole.
///
/// It has no timer: its event loop's ``LoopSweep`` checks every connection of the loop
/// (`NIO`'s scheduled tasks cost about 300 bytes each, and a connection had two).
final class ConnectionTimers: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias InboundOut = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private var deadlines: ConnectionDeadlines
    private let sweep: LoopSweep
    private var context: ChannelHandlerContext?
    /// Where this connection is in ``sweep``'s list (nil: not in it).
    fileprivate var slot: Int?

    init(headTimeout: TimeAmount, idleTimeout: TimeAmount, sweep: LoopSweep) {
        self.deadlines = ConnectionDeadlines(headTimeout: headTimeout, idleTimeout: idleTimeout, now: sweep.now)
        self.sweep = sweep
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { self.sweep.add(self) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.sweep.remove(self)
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.sweep.add(self)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.sweep.remove(self)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.deadlines.read(now: { context.eventLoop.now })
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        self.deadlines.wrote()
        context.write(data, promise: promise)
    }

    /// A whole head arrived.
    func headCompleted() { self.deadlines.headCompleted() }

    /// The connection stopped reading heads (backpressure).
    func paused() { self.deadlines.paused() }

    /// The sweep's check: closes the connection if a deadline passed.
    fileprivate func check(now: NIODeadline) {
        guard let context = self.context, context.channel.isActive else { return }
        let queued = (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
        if self.deadlines.check(now: now, queuedBytes: queued) { context.close(promise: nil) }
    }
}

/// The periodic check of every connection on one event loop (``ConnectionTimers``): one repeating
/// timer per loop while it has connections, instead of two per connection. Use it only on its loop.
final class LoopSweep {
    private let loop: any EventLoop
    private let interval: TimeAmount
    private var members: [ConnectionTimers] = []
    private var timer: Scheduled<Void>?

    init(loop: any EventLoop, interval: TimeAmount) {
        self.loop = loop
        self.interval = interval
    }

    var count: Int { self.members.count }
    /// The loop's clock (a test's `EmbeddedEventLoop` has its own).
    var now: NIODeadline { self.loop.now }

    fileprivate func add(_ member: ConnectionTimers) {
        guard member.slot == nil else { return }
        member.slot = self.members.count
        self.members.append(member)
        if self.timer == nil { self.scheduleSweep() }
    }

    fileprivate func remove(_ member: ConnectionTimers) {
        guard let slot = member.slot else { return }
        member.slot = nil
        let last = self.members.removeLast()
        if slot < self.members.count {
            self.members[slot] = last
            last.slot = slot
        }
        if self.members.isEmpty {
            self.members = []  // no storage kept while the loop has no connection
            self.timer?.cancel()
            self.timer = nil
        }
    }

    private func scheduleSweep() {
        self.timer = self.loop.assumeIsolated().scheduleTask(in: self.interval) {
            let now = self.loop.now
            // A check may close its connection, which leaves the list: go over a copy.
            for member in self.members { member.check(now: now) }
            if self.members.isEmpty { self.timer = nil } else { self.scheduleSweep() }
        }
    }
}

/// One ``LoopSweep`` per event loop, made on first use on that loop.
final class LoopSweeps: Sendable {
    private let interval: TimeAmount
    private let sweeps = Mutex<[ObjectIdentifier: NIOLoopBound<LoopSweep>]>([:])

    /// Checks every quarter of the shorter of the two timeouts: a connection is closed 1 to 1.25
    /// head timeouts after a head's first byte, 1 to 1.5 idle periods after its last progress.
    init(headTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.interval = .nanoseconds(max(1, min(headTimeout.nanoseconds, idleTimeout.nanoseconds) / 4))
    }

    /// The sweep of `loop`; call on `loop`.
    func forLoop(_ loop: any EventLoop) -> LoopSweep {
        self.sweeps.withLock { sweeps in
            if let bound = sweeps[ObjectIdentifier(loop)] { return bound.value }
            let sweep = LoopSweep(loop: loop, interval: self.interval)
            sweeps[ObjectIdentifier(loop)] = NIOLoopBound(sweep, eventLoop: loop)
            return sweep
        }
    }
}
