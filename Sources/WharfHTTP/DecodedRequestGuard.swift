import NIOCore
import NIOHTTP1
import OCIDistribution

/// Right above NIO's HTTP decoder, where it sees what the decoder made of the bytes: tells the
/// connection's head clock (``ConnectionTimers``) that a head (or a request body) arrived whole,
/// and answers requests the parser rejects (oversize headers, garbage) with OCI error JSON, then closes.
///
/// It also ends the connection at a request the decoder takes for a protocol switch, after which
/// NIO's decoder parses nothing more (Wharf has no upgrader): a `GET` with `Connection: Upgrade`
/// (`h2c`, `websocket`: curl `--http2` sends one) is answered as `Connection: close`, and a `CONNECT`
/// gets a framed 405 `UNSUPPORTED` (written below the encoder, which gives a CONNECT's answer no
/// body) and the connection closes. Either way nothing more is read: before, the connection sat
/// unanswered until a timeout while whatever the client sent piled up in the decoder.
final class DecodedRequestGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let timers: ConnectionTimers
    private var responseInProgress = false
    /// A request switching protocols was seen: nothing after it is read.
    private var lastRequestSeen = false
    /// A `CONNECT` being dropped (its parts are not passed on).
    private var droppingConnect = false
    /// Writes below the HTTP encoder (``DecoderFeed``'s place), and tells whether anything is in flight
    /// (strong, dropped in `handlerRemoved`: see ``DecoderFeed/lifecycle``).
    var feed: DecoderFeed?
    var lifecycle: ConnectionLifecycle?

    init(_ timers: ConnectionTimers) { self.timers = timers }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.feed = nil
        self.lifecycle = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(var head):
            self.timers.headCompleted()
            if head.method == .CONNECT {
                self.lastRequestSeen = true
                self.droppingConnect = true
                return self.refuseConnect(context)
            }
            if Self.asksForUpgrade(head.headers) {
                self.lastRequestSeen = true
                head.headers.replaceOrAdd(name: "connection", value: "close")  // answered, then the connection closes
                return context.fireChannelRead(self.wrapInboundOut(.head(head)))
            }
        case .end:
            self.timers.headCompleted()
            if self.droppingConnect { return }
        case .body:
            if self.droppingConnect { return }
        }
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if !self.lastRequestSeen { context.read() }
    }

    /// `Connection: upgrade` (a token of it) with an `Upgrade` header: what llhttp treats as a switch.
    static func asksForUpgrade(_ headers: HTTPHeaders) -> Bool {
        headers.contains(name: "upgrade") && headers[canonicalForm: "connection"].contains { $0.lowercased() == "upgrade" }
    }

    /// A framed 405 for a `CONNECT`, then close: at once if nothing is in flight, else the connection
    /// closes once what is in flight is written (a `CONNECT` pipelined behind registry requests is no
    /// client's; answering it out of order is not an option).
    private func refuseConnect(_ context: ChannelHandlerContext) {
        let channel = context.channel
        // Nothing in flight (the event loop could answer now): raw bytes written now go out in order.
        guard let below = self.feed?.context, self.lifecycle?.mayAnswerOnLoop ?? false else {
            self.lifecycle?.closeAfterInFlight()
            return
        }
        let e = RegistryError(.unsupported, "CONNECT is not supported: this is a registry, not a proxy")
        let body = e.jsonBody
        let head = "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nAllow: GET, HEAD\r\n"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        below.writeAndFlush(NIOAny(IOData.byteBuffer(channel.allocator.buffer(string: head + body)))).whenComplete { _ in
            channel.close(promise: nil)
        }
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
