import NIOCore
import NIOHTTP1
import OCIDistribution

/// Right above NIO's HTTP decoder, where it sees what the decoder made of the bytes: tells the
/// connection's head clock (``ConnectionTimers``) that a head (or a request body) arrived whole,
/// and answers requests the parser rejects (oversize headers, garbage) with OCI error JSON, then closes.
final class DecodedRequestGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let timers: ConnectionTimers
    private var responseInProgress = false

    init(_ timers: ConnectionTimers) { self.timers = timers }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head, .end: self.timers.headCompleted()
        case .body: break
        }
        context.fireChannelRead(data)
    }

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
