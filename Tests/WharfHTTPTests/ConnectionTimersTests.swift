import NIOCore
import NIOEmbedded
import Testing
@testable import WharfHTTP

/// ``ConnectionDeadlines`` as a value, and ``ConnectionTimers`` with its loop's ``LoopSweep`` in
/// `EmbeddedChannel`s on a virtual clock: no sockets, no waiting.
@Suite(.tags(.unit)) struct ConnectionTimersTests {
    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test("a head must be whole within the head timeout of its first byte; each whole head, or a pause, stops the clock")
    func headDeadline() {
        var d = ConnectionDeadlines(headTimeout: .seconds(10), idleTimeout: .seconds(100), now: Self.t0)
        d.read(now: { Self.t0 })
        #expect(d.headStarted == Self.t0)
        d.read(now: { Self.t0 + .seconds(5) })
        #expect(d.headStarted == Self.t0, "later bytes of the same head keep its clock")
        var closes = d.check(now: Self.t0 + .seconds(10) - .nanoseconds(1), queuedBytes: 0)
        #expect(!closes)
        closes = d.check(now: Self.t0 + .seconds(10), queuedBytes: 0)
        #expect(closes)

        d.headCompleted()
        closes = d.check(now: Self.t0 + .seconds(30), queuedBytes: 0)
        #expect(!closes && d.headStarted == nil)
        d.read(now: { Self.t0 + .seconds(31) })
        #expect(d.headStarted == Self.t0 + .seconds(31), "the next head starts its own clock")
        d.paused()
        closes = d.check(now: Self.t0 + .seconds(60), queuedBytes: 0)
        #expect(!closes, "no head clock while paused")
    }

    @Test("no progress for the idle period closes; a read, a write or queued bytes draining is progress, queued bytes standing still are not")
    func idle() {
        var d = ConnectionDeadlines(headTimeout: .seconds(1000), idleTimeout: .seconds(100), now: Self.t0)
        var closes = d.check(now: Self.t0 + .seconds(99), queuedBytes: 0)
        #expect(!closes)
        closes = d.check(now: Self.t0 + .seconds(100), queuedBytes: 0)
        #expect(closes, "a connection that never sent anything")

        for progress in 0..<3 {
            var p = ConnectionDeadlines(headTimeout: .seconds(1000), idleTimeout: .seconds(100), now: Self.t0)
            _ = p.check(now: Self.t0 + .seconds(50), queuedBytes: 5000)  // a big answer queued: progress
            switch progress {
            case 0: p.read(now: { Self.t0 + .seconds(90) }); p.headCompleted()
            case 1: p.wrote()
            default: break
            }
            let queued = progress == 2 ? 4000 : 5000  // 2: the queued answer drained a little
            closes = p.check(now: Self.t0 + .seconds(120), queuedBytes: queued)
            #expect(!closes, "progress \(progress)")
            closes = p.check(now: Self.t0 + .seconds(219), queuedBytes: queued)
            #expect(!closes, "progress \(progress): within the period after the check that saw it")
            closes = p.check(now: Self.t0 + .seconds(220), queuedBytes: queued)
            #expect(closes, "progress \(progress): queued bytes that do not drain are no progress")
        }
    }

    @Test("one sweep per loop checks every connection on it, closes those past a deadline, and stops when none is left")
    func sweep() throws {
        let loop = EmbeddedEventLoop()
        let sweeps = LoopSweeps(headTimeout: .seconds(8), idleTimeout: .seconds(40))
        let sweep = sweeps.forLoop(loop)
        #expect(sweeps.forLoop(loop) === sweep)
        var channels: [EmbeddedChannel] = []
        for _ in 0..<3 {
            let channel = EmbeddedChannel(loop: loop)
            try channel.pipeline.syncOperations.addHandler(ConnectionTimers(headTimeout: .seconds(8), idleTimeout: .seconds(40), sweep: sweep))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            channels.append(channel)
        }
        #expect(sweep.count == 3)
        try channels[0].writeInbound(ByteBuffer(string: "GET / HT"))  // a head that never ends
        loop.advanceTime(by: .seconds(8))
        #expect(!channels[0].isActive, "cut off at the head deadline (checked every 2 s)")
        #expect(channels[1].isActive && channels[2].isActive && sweep.count == 2)
        for _ in 0..<20 {
            try channels[1].writeInbound(ByteBuffer(string: "x"))
            if let timers = try? channels[1].pipeline.syncOperations.handler(type: ConnectionTimers.self) { timers.headCompleted() }
            loop.advanceTime(by: .seconds(2))
        }
        #expect(channels[1].isActive && !channels[2].isActive, "idle after 40 s; the one reading is not")
        _ = try channels[1].finish()
        #expect(sweep.count == 0)
        loop.advanceTime(by: .seconds(60))  // no timer left to run
    }
}
