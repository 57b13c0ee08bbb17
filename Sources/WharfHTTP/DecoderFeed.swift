import NIOCore

/// Right below NIO's HTTP decoder: hands it request bytes only while the async side has room for
/// more whole requests (``AsyncSideMachine/highWatermark``), and then in slices of at most
/// ``sliceBytes``.
///
/// The decoder parses every byte it is given at once, and each request it parses waits as a decoded
/// head, about 15 times its size on the wire (`GET / HTTP/1.1` is 18 bytes; its head ~270). Without
/// this, one read batch of tiny pipelined requests (up to 1 MiB) became ~58,000 waiting heads: a
/// client with 500 connections that never read held 1.6 GiB. Held here, bytes stay bytes: a
/// connection holds at most its read batch as received, plus one slice's requests decoded beyond the
/// watermark. While bytes are held the socket is not read, a half-close waits behind them (the
/// requests before it are still answered), and ``ConnectionLifecycle`` does not let the event loop
/// answer a later hit before them.
final class DecoderFeed: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    /// The most bytes passed to the decoder at once while requests are queued: at most ~110 of the
    /// smallest requests decoded beyond the watermark.
    static let sliceBytes = 2048

    /// Asked before each slice: whether the async side takes more requests. A strong reference,
    /// dropped when the pipeline is torn down: a weak one would move the lifecycle's reference count
    /// to a side table, and every hit retains it (measured: +1–3 µs of CPU per 16 KiB hit).
    var lifecycle: ConnectionLifecycle?
    /// Below the HTTP encoder: ``DecodedRequestGuard`` writes raw bytes here.
    private(set) var context: ChannelHandlerContext?
    private var held: ByteBuffer?
    private var heldRead = false
    private var heldInputClosed: Any?

    /// Bytes are waiting for room: nothing after them may be answered first.
    var isHolding: Bool { self.held != nil }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.lifecycle = nil
    }

    private var hasRoom: Bool { self.lifecycle?.hasRoomForRequests ?? true }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        // Nearly always: one head (or a few), and room for it.
        if self.held == nil, buffer.readableBytes <= Self.sliceBytes, self.hasRoom { return context.fireChannelRead(data) }
        if var held = self.held {
            held.writeBuffer(&buffer)
            self.held = held
        } else {
            self.held = buffer
        }
        self.feed(context)
    }

    private func feed(_ context: ChannelHandlerContext) {
        while var held = self.held, self.hasRoom {
            let slice = held.readSlice(length: min(Self.sliceBytes, held.readableBytes))!
            self.held = held.readableBytes > 0 ? held : nil
            context.fireChannelRead(self.wrapInboundOut(slice))
        }
    }

    func read(context: ChannelHandlerContext) {
        if self.held != nil {
            self.heldRead = true
        } else {
            context.read()
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed, self.held != nil {
            self.heldInputClosed = event  // delivered once the requests before it are
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The async side answered a request: pass on what is held while there is room, then the read
    /// or half-close held back behind it.
    func roomMade() {
        guard let context = self.context, self.held != nil else { return }
        self.feed(context)
        context.fireChannelReadComplete()
        guard self.held == nil else { return }
        if let event = self.heldInputClosed {
            self.heldInputClosed = nil
            context.fireUserInboundEventTriggered(event)
        }
        if self.heldRead {
            self.heldRead = false
            context.read()
        }
    }
}
