import Foundation
import NIOCore
import NIOEmbedded
import Testing
@testable import WharfHTTP

/// ``FileRegionReader`` (a TLS connection's file bodies as buffers) in an `EmbeddedChannel`, and
/// its ``FileRegionQueue`` as a value.
@Suite(.tags(.unit))
struct FileRegionReaderTests {
    /// A temporary file of `count` pseudo-random bytes, opened for reading.
    static func file(_ count: Int) throws -> (bytes: [UInt8], handle: NIOFileHandle, path: String) {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let path = NSTemporaryDirectory() + "wharf-region-\(UUID().uuidString)"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let handle = try NIOFileHandle(_deprecatedPath: path)
        return (bytes, handle, path)
    }

    /// A connected channel with the reader (EmbeddedChannel is inactive until connected).
    static func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: FileRegionReader())
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    static func drain(_ channel: EmbeddedChannel) throws -> [ByteBuffer] {
        var out: [ByteBuffer] = []
        while let part = try channel.readOutbound(as: IOData.self) {
            guard case .byteBuffer(let b) = part else {
                Issue.record("a FileRegion went past the reader")
                continue
            }
            out.append(b)
        }
        return out
    }

    @Test("a region goes out as chunk-sized buffers, in order with the writes around it; its promise completes with the last chunk")
    func chunksInOrder() throws {
        let (bytes, handle, path) = try Self.file(FileRegionReader.chunkSize * 2 + 12_345)
        defer { try? handle.close(); try? FileManager.default.removeItem(atPath: path) }
        let channel = try Self.channel()
        let head = ByteBuffer(string: "HEAD\r\n"), tail = ByteBuffer(string: "NEXT RESPONSE")
        channel.write(IOData.byteBuffer(head), promise: nil)
        let done = channel.eventLoop.makePromise(of: Void.self)
        var completed = false
        done.futureResult.whenSuccess { completed = true }
        channel.write(IOData.fileRegion(FileRegion(fileHandle: handle, readerIndex: 100, endIndex: bytes.count)), promise: done)
        channel.writeAndFlush(IOData.byteBuffer(tail), promise: nil)
        let parts = try Self.drain(channel)
        #expect(parts.map(\.readableBytes) == [6, FileRegionReader.chunkSize, FileRegionReader.chunkSize, 12_245, 13])
        var joined = ByteBuffer()
        for var p in parts { joined.writeBuffer(&p) }
        let same = Array(joined.readableBytesView) == Array("HEAD\r\n".utf8) + bytes[100...] + Array("NEXT RESPONSE".utf8)
        #expect(same, "the bytes written differ from the file's")
        #expect(completed)
        _ = try channel.finish()
    }

    @Test("while the connection is not writable nothing is read; writes behind the region wait, then everything follows in order")
    func waitsForWritability() throws {
        let (bytes, handle, path) = try Self.file(FileRegionReader.chunkSize + 1)
        defer { try? handle.close(); try? FileManager.default.removeItem(atPath: path) }
        let channel = try Self.channel()
        channel.isWritable = false
        channel.write(IOData.fileRegion(FileRegion(fileHandle: handle, readerIndex: 0, endIndex: bytes.count)), promise: nil)
        channel.writeAndFlush(IOData.byteBuffer(ByteBuffer(string: "after")), promise: nil)
        #expect(try Self.drain(channel).isEmpty)
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        #expect(try Self.drain(channel).map(\.readableBytes) == [FileRegionReader.chunkSize, 1, 5])
        // Nothing queued any more: a buffer passes straight through.
        channel.writeAndFlush(IOData.byteBuffer(ByteBuffer(string: "x")), promise: nil)
        #expect(try Self.drain(channel).map(\.readableBytes) == [1])
        _ = try channel.finish()
    }

    @Test("a file shorter than its region fails the write and closes the connection, and what waited behind it fails too")
    func shortFileCloses() throws {
        let (bytes, handle, path) = try Self.file(1000)
        defer { try? handle.close(); try? FileManager.default.removeItem(atPath: path) }
        let channel = try Self.channel()
        let region = channel.eventLoop.makePromise(of: Void.self), behind = channel.eventLoop.makePromise(of: Void.self)
        var failures = 0
        region.futureResult.whenFailure { _ in failures += 1 }
        behind.futureResult.whenFailure { _ in failures += 1 }
        channel.isWritable = false  // both queued before the read
        channel.write(IOData.fileRegion(FileRegion(fileHandle: handle, readerIndex: 0, endIndex: bytes.count + 1)), promise: region)
        channel.writeAndFlush(IOData.byteBuffer(ByteBuffer(string: "after")), promise: behind)
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        #expect(failures == 2)
        #expect(!channel.isActive)
    }

    @Test("the queue: buffers pass while it is empty, flushes keep their place, a closed connection gets back every unwritten promise")
    func queueValue() throws {
        let loop = EmbeddedEventLoop()
        let (bytes, handle, path) = try Self.file(10)
        defer { try? handle.close(); try? FileManager.default.removeItem(atPath: path) }
        var queue = FileRegionQueue()
        guard case .pass = queue.write(.byteBuffer(ByteBuffer(string: "a")), promise: nil) else { Issue.record("not passed"); return }
        let flushedThrough = queue.flush()
        #expect(flushedThrough)
        let promises = (0..<2).map { _ in loop.makePromise(of: Void.self) }
        guard case .queued = queue.write(.fileRegion(FileRegion(fileHandle: handle, readerIndex: 0, endIndex: bytes.count)), promise: promises[0])
        else { Issue.record("region not queued"); return }
        guard case .queued = queue.write(.byteBuffer(ByteBuffer(string: "b")), promise: promises[1]) else { Issue.record("not queued"); return }
        let queuedFlushes = [queue.flush(), queue.flush()]  // one flush entry for both
        #expect(queuedFlushes == [false, false])
        guard case .wait = queue.next(writable: false, chunkSize: 4) else { Issue.record("read while not writable"); return }
        guard case .read(_, 0, 4, .none) = queue.next(writable: true, chunkSize: 4) else { Issue.record("first chunk"); return }
        let left = queue.removeAll()
        #expect(left.count == 2 && left.allSatisfy { $0 != nil })
        #expect(queue.isEmpty)
        for p in promises { p.succeed() }
        try loop.syncShutdownGracefully()
    }
}
