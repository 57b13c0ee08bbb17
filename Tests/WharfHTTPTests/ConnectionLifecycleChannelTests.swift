import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import WharfHTTP

/// ``ConnectionLifecycle`` in an `EmbeddedChannel`: when it starts a task for the async side, how a
/// task's writes and its end are carried out, and when the connection closes.
@Suite(.tags(.unit)) struct ConnectionLifecycleChannelTests {
    /// A channel whose only handler is a lifecycle that records the jobs it starts.
    static func channel() throws -> (EmbeddedChannel, ConnectionLifecycle, NIOLockedValueBox<[AsyncSideJob]>) {
        let jobs = NIOLockedValueBox<[AsyncSideJob]>([])
        let lifecycle = ConnectionLifecycle(startTask: { job in jobs.withLockedValue { $0.append(job) } })
        let channel = EmbeddedChannel(handler: lifecycle)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, lifecycle, jobs)
    }

    static func send(_ channel: EmbeddedChannel, _ uri: String) throws {
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: uri)))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
    }

    static func response(_ status: HTTPResponseStatus = .ok) -> [HTTPServerResponsePart] {
        [.head(HTTPResponseHead(version: .http1_1, status: status)), .end(nil)]
    }

    static func uris(_ jobs: NIOLockedValueBox<[AsyncSideJob]>) -> [String] { jobs.withLockedValue { $0.map(\.request.head.uri) } }

    @Test("an idle connection has no task; pipelined requests get one task each, the next started when one has answered")
    func oneTaskAtATime() throws {
        let (channel, lifecycle, jobs) = try Self.channel()
        #expect(Self.uris(jobs).isEmpty && lifecycle.mayAnswerOnLoop)
        try Self.send(channel, "/a")
        try Self.send(channel, "/b")
        #expect(Self.uris(jobs) == ["/a"])
        #expect(!lifecycle.mayAnswerOnLoop, "the event loop answers nothing while the async side has requests")

        #expect(try lifecycle.write(Self.response(), waitForDrain: true) == nil)
        lifecycle.answered(keepAlive: true)
        #expect(Self.uris(jobs) == ["/a", "/b"])
        #expect(try lifecycle.write(Self.response(), waitForDrain: true) == nil)
        lifecycle.answered(keepAlive: true)
        #expect(Self.uris(jobs) == ["/a", "/b"], "none left: no task")
        #expect(lifecycle.mayAnswerOnLoop)
        var heads = 0
        while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) { if case .head = part { heads += 1 } }
        #expect(heads == 2)

        try Self.send(channel, "/c")
        #expect(Self.uris(jobs) == ["/a", "/b", "/c"], "a later request starts a new task")
        _ = try? channel.finish()
    }

    @Test("while the connection is not writable a task's write waits and the gate stays shut; both open once it drains")
    func writeBackpressure() throws {
        let (channel, lifecycle, jobs) = try Self.channel()
        try Self.send(channel, "/a")
        let gate = try #require(jobs.withLockedValue { $0.first?.gate })
        #expect(gate.take(), "writable: the first write need not wait")
        channel.isWritable = false
        #expect(try lifecycle.write([.head(HTTPResponseHead(version: .http1_1, status: .ok))], waitForDrain: false) == nil)
        #expect(!gate.take(), "not writable: the gate stays taken")
        let written = try #require(try lifecycle.write([.body(.byteBuffer(ByteBuffer(string: "x")))], waitForDrain: true))
        var done = false
        written.whenSuccess { done = true }
        #expect(!done)
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        #expect(done && gate.take())

        channel.isWritable = false
        let pending = try #require(try lifecycle.write([.body(.byteBuffer(ByteBuffer(string: "y")))], waitForDrain: true))
        var failed = false
        pending.whenFailure { _ in failed = true }
        _ = try? channel.finish()
        #expect(failed)
        let handle = try NIOFileHandle(_deprecatedPath: "/dev/null")
        let region = FileRegion(fileHandle: handle, readerIndex: 0, endIndex: 0)
        #expect(throws: ChannelError.self) { try lifecycle.write([.body(.fileRegion(region))], waitForDrain: true) }
        #expect(!handle.isOpen, "a file that never reaches the pipeline is closed")
        #expect(!gate.take(), "closed: the gate stays shut")
    }

    @Test("the client closing its side closes an idle connection at once, a busy one after its last answer")
    func halfClosure() throws {
        let (idle, _, _) = try Self.channel()
        idle.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        idle.embeddedEventLoop.run()
        #expect(!idle.isActive)

        let (busy, lifecycle, _) = try Self.channel()
        try Self.send(busy, "/a")
        busy.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        busy.embeddedEventLoop.run()
        #expect(busy.isActive, "the answer still goes out")
        _ = try lifecycle.write(Self.response(), waitForDrain: true)
        lifecycle.answered(keepAlive: true)
        busy.embeddedEventLoop.run()
        #expect(!busy.isActive)
    }

    @Test("a response without keep-alive drops the requests behind it; a failed task closes the connection")
    func closing() throws {
        let (channel, lifecycle, jobs) = try Self.channel()
        try Self.send(channel, "/a")
        try Self.send(channel, "/b")
        _ = try lifecycle.write(Self.response(), waitForDrain: true)
        lifecycle.answered(keepAlive: false)
        try Self.send(channel, "/c")
        #expect(Self.uris(jobs) == ["/a"])

        let (other, otherLifecycle, _) = try Self.channel()
        try Self.send(other, "/a")
        otherLifecycle.failed()
        #expect(!other.isActive)
    }
}
