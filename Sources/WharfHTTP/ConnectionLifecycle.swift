import NIOCore
import NIOExtras
import NIOHTTP1

/// The top of a connection's pipeline: carries out its ``ConnectionStateMachine`` and hands the
/// requests the event loop did not answer to the async side (``AsyncSideMachine``).
///
/// It sees every request that goes on to the async side and writes every response from there, so
/// it knows what is in flight; ``HitPath`` reports its own sendfiles. On `ChannelShouldQuiesceEvent`
/// (graceful shutdown, from NIO's `ServerQuiescingHelper`) it lets what is in flight finish — a big
/// hit being sent included — and then closes the connection once its last byte is written.
///
/// The async side is a task started for one whole request (``AsyncSideJob``); it writes through
/// ``ResponseOutbound`` and ends with its answer, and the next request waiting starts the next task.
/// An idle connection holds no task.
final class ConnectionLifecycle: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private(set) var machine = ConnectionStateMachine()
    private var requests = AsyncSideMachine()
    private var context: ChannelHandlerContext?
    /// Hands a job to the server's task group.
    private let startTask: @Sendable (AsyncSideJob) -> Void
    private let admission: AsyncSideJob.Admission
    /// The task waiting for the outbound side to drain.
    private var drained: EventLoopPromise<Void>?
    /// Lets the task answering a request write without waiting (nil while none is).
    private var gate: WriteGate?
    /// Below the decoder: holds request bytes while the async side has no room for more (strong,
    /// dropped in `handlerRemoved`: see ``DecoderFeed/lifecycle``).
    var feed: DecoderFeed?

    init(admission: AsyncSideJob.Admission = .init(), startTask: @escaping @Sendable (AsyncSideJob) -> Void = { _ in }) {
        self.admission = admission
        self.startTask = startTask
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.feed = nil
        self.failDrained()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.machine.requestForwarded()
            self.requests.head(head)
        case .body(let body):
            self.requests.body(body.readableBytes)
        case .end:
            if case .start(let request) = self.requests.end() { self.start(request, context) }
        }
    }

    private func start(_ request: AsyncSideMachine.Request, _ context: ChannelHandlerContext) {
        let gate = self.gate ?? WriteGate(open: context.channel.isWritable)
        self.gate = gate
        self.startTask(AsyncSideJob(
            lifecycle: NIOLoopBound(self, eventLoop: context.eventLoop), channel: context.channel, admission: self.admission, request: request,
            gate: gate))
    }

    func read(context: ChannelHandlerContext) {
        if self.requests.mayRead() { context.read() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            return self.perform(self.machine.quiesce(), context.channel)
        }
        if let event = event as? ChannelEvent, event == .inputClosed, self.requests.inputClosed() {
            Self.closeWhenFlushed(context.channel)
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// An error nothing below handled: no more requests are read; the connection closes once what is in flight is sent.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if self.requests.inputClosed() { Self.closeWhenFlushed(context.channel) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.drainedBelowHighWater() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.machine.channelClosed()
        self.requests.channelClosed()
        self.failDrained()
        context.fireChannelInactive()
    }

    // MARK: From the async side (on the event loop)

    /// Writes and flushes a response's `parts` from the async side, and closes the file of each
    /// file region once it is written. Returns nil when the connection can take more; else, if
    /// `waitForDrain`, a future that succeeds once it can. Throws if the connection is closed (and
    /// closes the files among the parts).
    func write(_ parts: [HTTPServerResponsePart], waitForDrain: Bool) throws -> EventLoopFuture<Void>? {
        guard let context = self.context, context.channel.isActive else {
            for case .body(.fileRegion(let region)) in parts { try? region.fileHandle.close() }
            self.gate?.close()
            throw ChannelError.ioOnClosedChannel
        }
        for part in parts {
            switch part {
            case .body(.fileRegion(let region)):
                // The write returns once queued: the file is closed once it is written (or failed).
                context.write(self.wrapOutboundOut(part)).whenComplete { _ in try? region.fileHandle.close() }
            case .end:
                guard self.machine.asyncResponseEnded() == .closeWhenFlushed else {
                    context.write(self.wrapOutboundOut(part), promise: nil)
                    continue
                }
                let channel = context.channel
                context.write(self.wrapOutboundOut(part)).whenComplete { _ in channel.close(promise: nil) }
            case .head, .body:
                context.write(self.wrapOutboundOut(part), promise: nil)
            }
        }
        context.flush()
        if context.channel.isWritable {
            self.gate?.reopen()
            return nil
        }
        guard waitForDrain else { return nil }  // the gate stays taken until the connection drains
        let drained = self.drained ?? context.eventLoop.makePromise()
        self.drained = drained
        return drained.futureResult
    }

    /// The task answered its request (and ended); `keepAlive` false: its response closes the
    /// connection (the output is half-closed once its bytes are written). Starts the next request waiting.
    func answered(keepAlive: Bool) {
        guard let context = self.context else { return }
        guard keepAlive else {
            self.requests.responseClosesConnection()
            self.gate = nil
            context.close(mode: .output, promise: nil)
            return
        }
        switch self.requests.answered() {
        case .start(let request, let resumeReading):
            self.start(request, context)
            if resumeReading { context.read() }
        case .stop(let closeWhenFlushed):
            self.gate = nil
            if closeWhenFlushed { Self.closeWhenFlushed(context.channel) }
        }
        if let feed = self.feed, feed.isHolding {
            // Not from inside the task's write: the held requests are decoded on the loop's next turn.
            context.eventLoop.execute { feed.roomMade() }
        }
    }

    /// No request after this one is answered: the connection closes once what is in flight is written.
    func closeAfterInFlight() {
        guard let channel = self.context?.channel else { return }
        self.machine.responseWithoutKeepAlive()
        if self.requests.inputClosed() { Self.closeWhenFlushed(channel) }
    }

    /// Whether the async side takes more decoded requests now (``DecoderFeed`` asks before each slice).
    var hasRoomForRequests: Bool { self.requests.hasRoom }

    /// The task failed (an aborted response, a closed connection): nothing more is answered, and the
    /// connection closes now (a client must not take a cut-off response for a whole one).
    func failed() {
        self.requests.channelClosed()
        self.gate = nil
        self.context?.close(promise: nil)
    }

    // MARK: From the hit path (on the event loop)

    /// Nothing is in flight, and no earlier request waits as bytes in ``DecoderFeed``.
    var mayAnswerOnLoop: Bool { self.machine.mayAnswerOnLoop && !(self.feed?.isHolding ?? false) }
    var isEnding: Bool { self.machine.isEnding }

    func hitSendStarted() { self.machine.hitSendStarted() }

    func hitSendFinished() {
        guard let channel = self.context?.channel else { return }
        self.perform(self.machine.hitSendFinished(), channel)
    }

    func responseWithoutKeepAlive() { self.machine.responseWithoutKeepAlive() }

    private func perform(_ action: ConnectionStateMachine.Action, _ channel: any Channel) {
        switch action {
        case .none: break
        case .closeWhenFlushed: Self.closeWhenFlushed(channel)
        }
    }

    private static func closeWhenFlushed(_ channel: any Channel) {
        RegistryServer.queuedBytesWritten(channel).whenComplete { _ in channel.close(promise: nil) }
    }

    private func drainedBelowHighWater() {
        self.gate?.reopen()
        self.drained?.succeed()
        self.drained = nil
    }

    private func failDrained() {
        self.gate?.close()
        self.drained?.fail(ChannelError.ioOnClosedChannel)
        self.drained = nil
    }
}
