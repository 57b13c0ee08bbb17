import NIOCore
import NIOHTTP1
import OCIDistribution

/// Closes the file behind a `FileRegion` once its write has finished or failed (the async writer
/// returns when a write is queued, not when it is done).
final class FileRegionCloser: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .body(.fileRegion(let region)) = self.unwrapOutboundIn(data) {
            let p = promise ?? context.eventLoop.makePromise()
            p.futureResult.whenComplete { _ in try? region.fileHandle.close() }
            context.write(data, promise: p)
        } else {
            context.write(data, promise: promise)
        }
    }
}

/// Answers requests the HTTP parser rejects (oversize headers, garbage) with OCI error JSON, then closes.
final class ProtocolErrorResponder: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var responseInProgress = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.unwrapOutboundIn(data) {
        case .head: self.responseInProgress = true
        case .end: self.responseInProgress = false
        case .body: break
        }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        if !self.responseInProgress {
            let oversize = parserError == .headerOverflow
            let e = oversize
                ? RegistryError(.requestInvalid, "request headers too large", status: 431)
                : RegistryError(.requestInvalid, "malformed HTTP request", status: 400)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Connection", value: "close")
            let body = context.channel.allocator.buffer(string: e.jsonBody)
            headers.add(name: "Content-Length", value: String(body.readableBytes))
            let head = HTTPResponseHead(version: .http1_1, status: .init(statusCode: e.status), headers: headers)
            context.write(self.wrapOutboundOut(.head(head)), promise: nil)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        }
        context.close(promise: nil)
    }
}

/// Closes a connection that made no progress for the idle period: nothing read, nothing written,
/// and none of its queued response bytes sent.
///
/// NIO's `IdleStateHandler` sees a write only when it completes, so a big blob going out to a slow
/// client as one sendfile counted as idle and was cut off after the timeout; here queued bytes that
/// drain count as progress. It also adds no promise to every write (that cost 3 % of a small hit).
/// Sits next to the socket, below the HTTP codec and ``ResponseOutlet``, so it sees every write.
final class IdleConnectionCloser: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias InboundOut = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    /// Checks per idle period: the connection closes 1 to 1.25 periods after its last progress.
    private static let checksPerPeriod: Int64 = 4
    private let timeout: TimeAmount
    private var progressed = true
    private var idleChecks: Int64 = 0
    private var lastQueuedBytes = 0
    private var check: Scheduled<Void>?

    init(timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.scheduleCheck(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) { self.check?.cancel() }

    func channelActive(context: ChannelHandlerContext) {
        if self.check == nil { self.scheduleCheck(context) }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.check?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.progressed = true
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        self.progressed = true
        context.write(data, promise: promise)
    }

    private func scheduleCheck(_ context: ChannelHandlerContext) {
        let interval = TimeAmount.nanoseconds(max(1, self.timeout.nanoseconds / Self.checksPerPeriod))
        self.check = context.eventLoop.assumeIsolated().scheduleTask(in: interval) {
            guard context.channel.isActive else { return }
            let queued = (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
            if queued != self.lastQueuedBytes { self.progressed = true }
            self.lastQueuedBytes = queued
            self.idleChecks = self.progressed ? 0 : self.idleChecks + 1
            self.progressed = false
            if self.idleChecks >= Self.checksPerPeriod {
                context.close(promise: nil)
            } else {
                self.scheduleCheck(context)
            }
        }
    }
}
