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
///
/// Backpressure: while the connection's outbound side is over its high-water mark (answers the
/// client has not read), the front answers nothing more, keeps the bytes it has, and withholds
/// `read()` so the socket stops being read, as NIO's `BackPressureHandler` does. A client that
/// pipelines requests without reading answers therefore holds at most one read batch of requests,
/// one high-water mark of answers and one or two open blob files, however much it sends.
final class HitFront: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private(set) var context: ChannelHandlerContext?
    /// Set once ``HitPath`` is in the pipeline (the two refer to each other until the pipeline is torn down).
    var hitPath: HitPath?
    private let maxHeadBytes: Int
    /// The start of a head that has not fully arrived, and how much of it was searched for its end.
    private var pending: ByteBuffer?
    private var pendingSearched = 0
    /// The decoder has the connection from here on.
    private var passthrough = false
    /// Answering is paused until the outbound side drains; a `read()` asked for meanwhile is held.
    private var paused = false
    private var heldRead = false
    /// Inside ``process(context:)``: a writability change seen there is acted on when it returns.
    private var processing = false

    /// The clock of the head being read (slow-loris): stopped for each head taken, and while paused.
    private let deadline: ConnectionTimers?

    init(maxHeadBytes: Int, deadline: ConnectionTimers? = nil) {
        self.maxHeadBytes = maxHeadBytes
        self.deadline = deadline
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.hitPath = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.passthrough, self.hitPath != nil else { return context.fireChannelRead(data) }
        var buffer = self.unwrapInboundIn(data)
        if var pending = self.pending {
            pending.writeBuffer(&buffer)
            self.pending = pending
        } else {
            self.pending = buffer
        }
        if self.paused {
            self.deadline?.paused()
        } else {
            self.process(context: context)
        }
    }

    /// Answers or forwards the whole heads in ``pending`` until it is used up, a head is incomplete,
    /// or the outbound side is full (then pauses).
    private func process(context: ChannelHandlerContext) {
        guard let hitPath = self.hitPath, var buffer = self.pending else { return }
        self.pending = nil
        var searched = self.pendingSearched
        self.pendingSearched = 0
        self.processing = true
        defer { self.processing = false }
        while buffer.readableBytes > 0, !hitPath.isEnding {
            guard context.channel.isWritable else {
                self.paused = true
                self.deadline?.paused()
                self.pending = buffer
                self.pendingSearched = searched
                return
            }
            let scan = buffer.withUnsafeReadableBytes {
                HitRequestScanner.scan($0, maxHeadBytes: self.maxHeadBytes, searchedTo: searched, userAgent: hitPath.logsRequests)
            }
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
                self.deadline?.headCompleted()
                if hitPath.tryAnswer(request) {
                    buffer.moveReaderIndex(forwardBy: length)
                } else {
                    hitPath.connection.triedHeads += 1
                    context.fireChannelRead(self.wrapInboundOut(buffer.readSlice(length: length)!))
                }
            }
        }
        // The last answers filled the outbound side: read nothing more until it drains.
        if !context.channel.isWritable, !hitPath.isEnding {
            self.paused = true
            self.deadline?.paused()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        context.fireChannelWritabilityChanged()
        guard self.paused, !self.processing, context.channel.isWritable else { return }
        self.paused = false
        self.process(context: context)
        context.fireChannelReadComplete()  // heads handed to the decoder above go on to the async side
        self.flushAnswers(context)
        if !self.paused, self.heldRead {
            self.heldRead = false
            context.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        if self.paused {
            self.heldRead = true
        } else {
            context.read()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
        self.flushAnswers(context)
    }

    private func flushAnswers(_ context: ChannelHandlerContext) {
        if let connection = self.hitPath?.connection, connection.unflushed {
            connection.unflushed = false
            context.flush()
        }
    }
}

/// Per-connection state that ``HitFront`` (below the HTTP codec) and ``HitPath`` (above it) share.
final class HitConnection {
    /// Responses written since the last flush; flushed when the read batch is done.
    var unflushed = false
    /// Heads the front already offered to ``HitPath`` and passed on to the decoder.
    var triedHeads = 0
    /// The last `Accept` lines and their parse: a client sends the same ones on every request.
    private var lastAccept: (lines: [String], set: AcceptSet)?
    /// The client's address, for the access log (read once per connection).
    private var clientAddress: String?

    func client(_ channel: any Channel) -> String {
        if let known = self.clientAddress { return known }
        let address = ConnectionAdmissions.clientKey(channel)
        self.clientAddress = address
        return address
    }

    func acceptSet(_ lines: [String]) -> AcceptSet {
        if let last = self.lastAccept, last.lines == lines { return last.set }
        let set = AcceptSet(lines: lines)
        self.lastAccept = (lines, set)
        return set
    }
}
