#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// Turns `FileRegion` writes into buffers for a TLS connection, where sendfile cannot encrypt.
///
/// Sits just above `NIOSSLServerHandler`, so everything above it (``HitPath`` and the async side)
/// writes files exactly as on plain HTTP. A region is read with `pread` on the event loop in
/// ``chunkSize`` pieces, each written as soon as the connection is writable — the same blocking
/// profile as sendfile, which also reads on the loop. Writes that arrive behind a region wait
/// behind it, so responses stay in order. Per connection at most one chunk plus the channel's
/// high-water mark of bytes is in memory, however big the file or slow the client (each chunk is
/// flushed as it is written, so the channel's writability sees it).
final class FileRegionReader: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias InboundOut = NIOAny
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    /// Bytes read per `pread` and written as one buffer.
    static let chunkSize = 256 * 1024

    private var queue = FileRegionQueue()
    /// Inside ``pump(_:)``: a writability change seen there is acted on by the loop itself.
    private var pumping = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.queue.write(self.unwrapOutboundIn(data), promise: promise) {
        case .pass(let data): context.write(self.wrapOutboundOut(data), promise: promise)
        case .queued: self.pump(context)
        }
    }

    func flush(context: ChannelHandlerContext) {
        if self.queue.flush() { context.flush() } else { self.pump(context) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        context.fireChannelWritabilityChanged()
        if context.channel.isWritable { self.pump(context) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.failAll(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { self.failAll(ChannelError.ioOnClosedChannel) }

    /// Writes queued data while the connection takes it; flushes what a flush covered.
    private func pump(_ context: ChannelHandlerContext) {
        guard !self.pumping else { return }
        self.pumping = true
        defer { self.pumping = false }
        var wrote = false
        while context.channel.isActive {
            switch self.queue.next(writable: context.channel.isWritable, chunkSize: Self.chunkSize) {
            case .wait:
                if wrote { context.flush() }
                return
            case .write(let data, let promise):
                context.write(self.wrapOutboundOut(data), promise: promise)
                wrote = true
            case .read(let handle, let offset, let count, let promise):
                guard let chunk = Self.read(handle, at: offset, count: count, allocator: context.channel.allocator) else {
                    // The file ended early or could not be read: the response cannot be completed.
                    let error = IOError(errnoCode: EIO, reason: "reading a cached file for TLS")
                    promise?.fail(error)
                    self.failAll(error)
                    context.close(promise: nil)
                    return
                }
                // Flushed at once: NIOSSL holds written bytes until a flush, and only flushed bytes
                // count against the channel's writability.
                context.writeAndFlush(self.wrapOutboundOut(.byteBuffer(chunk)), promise: promise)
                wrote = false
            case .flush:
                context.flush()
                wrote = false
            }
        }
    }

    private func failAll(_ error: any Error) {
        for promise in self.queue.removeAll() { promise?.fail(error) }
    }

    /// `count` bytes of `handle` from `offset`, or nil when fewer could be read.
    static func read(_ handle: NIOFileHandle, at offset: Int64, count: Int, allocator: ByteBufferAllocator) -> ByteBuffer? {
        var buffer = allocator.buffer(capacity: count)
        let complete = (try? handle.withUnsafeFileDescriptor { buffer.writeFile($0, at: offset, count: count) }) ?? false
        return complete ? buffer : nil
    }
}

/// The order of a TLS connection's outbound writes while a file region is being read out, as a
/// value: takes writes, flushes and "may I write?", and says what to write next. No I/O.
struct FileRegionQueue {
    enum Entry {
        case data(IOData, EventLoopPromise<Void>?)
        /// Bytes `[offset, end)` of a region still to read; the promise completes with its last chunk.
        case file(NIOFileHandle, offset: Int64, end: Int64, EventLoopPromise<Void>?)
        case flush
    }

    enum WriteAction {
        /// Nothing is queued: write it through now.
        case pass(IOData)
        /// Queued behind a region: pump.
        case queued
    }

    enum Next {
        /// Nothing to do until the connection is writable again (or nothing is queued).
        case wait
        case write(IOData, EventLoopPromise<Void>?)
        /// Read `count` bytes at `offset` and write them with `promise` (set on a region's last chunk).
        case read(NIOFileHandle, offset: Int64, count: Int, EventLoopPromise<Void>?)
        case flush
    }

    private(set) var entries: [Entry] = []
    private var head = 0

    var isEmpty: Bool { self.head == self.entries.count }

    mutating func write(_ data: IOData, promise: EventLoopPromise<Void>?) -> WriteAction {
        switch data {
        case .byteBuffer where self.isEmpty:
            return .pass(data)
        case .byteBuffer:
            self.entries.append(.data(data, promise))
        case .fileRegion(let region):
            self.entries.append(.file(region.fileHandle, offset: Int64(region.readerIndex), end: Int64(region.endIndex), promise))
        }
        return .queued
    }

    /// A flush: true when nothing is queued (flush through now); else it takes its place in the queue.
    mutating func flush() -> Bool {
        if self.isEmpty { return true }
        if case .flush = self.entries.last {} else { self.entries.append(.flush) }
        return false
    }

    mutating func next(writable: Bool, chunkSize: Int) -> Next {
        guard !self.isEmpty, writable else { return .wait }
        let entry = self.entries[self.head]
        switch entry {
        case .data(let data, let promise):
            self.pop()
            return .write(data, promise)
        case .flush:
            self.pop()
            return .flush
        case .file(let handle, let offset, let end, let promise):
            let count = Int(min(Int64(chunkSize), end - offset))
            if count <= 0 {
                self.pop()
                return .write(.byteBuffer(ByteBuffer()), promise)
            }
            if offset + Int64(count) >= end {
                self.pop()
                return .read(handle, offset: offset, count: count, promise)
            }
            self.entries[self.head] = .file(handle, offset: offset + Int64(count), end: end, promise)
            return .read(handle, offset: offset, count: count, nil)
        }
    }

    /// Empties the queue; returns the promises of what was never written.
    mutating func removeAll() -> [EventLoopPromise<Void>?] {
        let promises: [EventLoopPromise<Void>?] = self.entries[self.head...].compactMap {
            switch $0 {
            case .data(_, let p), .file(_, _, _, let p): return .some(p)
            case .flush: return nil
            }
        }
        self.entries = []
        self.head = 0
        return promises
    }

    private mutating func pop() {
        self.head += 1
        if self.head == self.entries.count {
            self.entries.removeAll(keepingCapacity: true)
            self.head = 0
        }
    }
}
