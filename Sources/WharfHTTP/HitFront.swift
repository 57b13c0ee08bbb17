import NIOCore
import OCIDistribution

/// Sits just below the HTTP codec. Reads request heads straight from the bytes
/// (``HitRequestScanner``) and lets ``HitPath`` answer cache hits before NIO's decoder sees them;
/// everything else goes on to the decoder as whole heads, in order. It is also where ``HitPath``
/// writes finished response bytes: a hit's head (and a small blob's body) goes out as one buffer in
/// one `writev`, without `HTTPHeaders` or the encoder.
///
/// A request the scanner does not take (a body, `HTTP/1.0`, odd headers, an oversize head) hands
/// the rest of the connection to the decoder, which then parses (or rejects) everything.
final class HitFront: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private(set) var context: ChannelHandlerContext?
    /// Set once ``HitPath`` is in the pipeline (the two refer to each other until the pipeline is torn down).
    var hitPath: HitPath?
    private let maxHeadBytes: Int
    /// The start of a head that has not fully arrived, and how much of it was searched for its end.
    private var pending: ByteBuffer?
    private var pendingSearched = 0
    /// The decoder has the connection from here on.
    private var passthrough = false

    init(maxHeadBytes: Int) { self.maxHeadBytes = maxHeadBytes }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.hitPath = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.passthrough, let hitPath = self.hitPath else { return context.fireChannelRead(data) }
        var buffer = self.unwrapInboundIn(data)
        var searched = 0
        if var pending = self.pending {
            pending.writeBuffer(&buffer)
            buffer = pending
            searched = self.pendingSearched
            self.pending = nil
        }
        while buffer.readableBytes > 0, !hitPath.connection.closing {
            let scan = buffer.withUnsafeReadableBytes { HitRequestScanner.scan($0, maxHeadBytes: self.maxHeadBytes, searchedTo: searched) }
            searched = 0
            switch scan {
            case .incomplete:
                self.pending = buffer
                self.pendingSearched = buffer.readableBytes
                return
            case .other:
                self.passthrough = true
                return context.fireChannelRead(self.wrapInboundOut(buffer))
            case .request(let request, let length):
                if hitPath.tryAnswer(request) {
                    buffer.moveReaderIndex(forwardBy: length)
                } else {
                    hitPath.connection.triedHeads += 1
                    context.fireChannelRead(self.wrapInboundOut(buffer.readSlice(length: length)!))
                }
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
        if let connection = self.hitPath?.connection, connection.unflushed {
            connection.unflushed = false
            context.flush()
        }
    }
}

/// Per-connection state that ``HitFront`` (below the HTTP codec) and ``HitPath`` (above it) share.
final class HitConnection {
    /// Requests handed to the async side whose response has not ended yet.
    var forwarded = 0
    /// Responses written since the last flush; flushed when the read batch is done.
    var unflushed = false
    /// Heads the front already offered to ``HitPath`` and passed on to the decoder.
    var triedHeads = 0
    /// A response without keep-alive was written: later requests are dropped.
    var closing = false
    /// The last `Accept` lines and their parse: a client sends the same ones on every request.
    private var lastAccept: (lines: [String], set: AcceptSet)?

    func acceptSet(_ lines: [String]) -> AcceptSet {
        if let last = self.lastAccept, last.lines == lines { return last.set }
        let set = AcceptSet(lines: lines)
        self.lastAccept = (lines, set)
        return set
    }
}
