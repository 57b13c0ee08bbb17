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

/// Closes a connection that neither read nor wrote for the idle period.
final class IdleConnectionCloser: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) } else { context.fireUserInboundEventTriggered(event) }
    }
}
