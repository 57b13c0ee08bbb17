import NIOCore
import Testing
@testable import WharfUpstream

/// The upstream body's producer/reader hand-over, as a value: batches, pausing, the end, errors, a reader that leaves.
@Suite(.tags(.unit)) struct StreamedBodyStateTests {
    static func part(_ n: Int) -> ByteBuffer { ByteBuffer(repeating: UInt8(truncatingIfNeeded: n), count: n) }
    static func sizes(_ parts: [ByteBuffer]) -> [Int] { parts.map(\.readableBytes) }

    enum Read: Equatable { case take([Int]), takeAndResume([Int]), wait, end, fail }
    static func read(_ s: inout StreamedBodyState) -> Read {
        switch s.read() {
        case .take(let p): return .take(Self.sizes(p))
        case .takeAndResumeProducer(let p): return .takeAndResume(Self.sizes(p))
        case .wait: return .wait
        case .end: return .end
        case .fail: return .fail
        }
    }

    @Test("parts pile up below the watermark, the reader takes them all at once; at the watermark the producer pauses until then")
    func batchesAndPause() {
        var s = StreamedBodyState(highWatermark: 100)
        guard case .proceed = s.receivedPart(Self.part(40)) else { Issue.record("paused early"); return }
        guard case .proceed = s.receivedPart(Self.part(40)) else { Issue.record("paused early"); return }
        guard case .pause = s.receivedPart(Self.part(30)) else { Issue.record("not paused at 110 of 100"); return }
        #expect(Self.read(&s) == .takeAndResume([40, 40, 30]))
        // Nothing waiting: the reader waits, and the next part goes straight to it.
        #expect(Self.read(&s) == .wait)
        guard case .resumeReader(let handed) = s.receivedPart(Self.part(7)) else { Issue.record("reader not resumed"); return }
        #expect(Self.sizes(handed) == [7])
        guard case .proceed = s.receivedPart(Self.part(5)) else { Issue.record("paused"); return }
        #expect(Self.read(&s) == .take([5]))
    }

    @Test("the end delivers what is left, then the end, to a waiting or a later reader")
    func end() {
        var s = StreamedBodyState(highWatermark: 100)
        _ = s.receivedPart(Self.part(10))
        guard case .none = s.finished() else { Issue.record("nobody waits"); return }
        #expect(Self.read(&s) == .take([10]))
        #expect(Self.read(&s) == .end)
        #expect(Self.read(&s) == .end)

        var w = StreamedBodyState(highWatermark: 100)
        #expect(Self.read(&w) == .wait)
        guard case .resumeReader(let last) = w.finished(), last.isEmpty else { Issue.record("waiting reader not told of the end"); return }
        #expect(Self.read(&w) == .end)
    }

    @Test("an error fails the waiting reader, or the next read; parts not yet taken are dropped (the body is incomplete)")
    func failure() {
        struct Broken: Error {}
        var s = StreamedBodyState(highWatermark: 100)
        #expect(Self.read(&s) == .wait)
        guard case .failReader = s.failed(Broken()) else { Issue.record("waiting reader not failed"); return }
        #expect(Self.read(&s) == .fail)

        var t = StreamedBodyState(highWatermark: 100)
        _ = t.receivedPart(Self.part(10))
        guard case .none = t.failed(Broken()) else { Issue.record("nobody waits"); return }
        #expect(Self.read(&t) == .fail)
        guard case .none = t.finished() else { Issue.record("an end after the error"); return }
        #expect(Self.read(&t) == .fail)
    }

    @Test("a reader that leaves cancels the request, lets a paused producer go and fails its own wait; after the end it cancels nothing")
    func abandoned() {
        var s = StreamedBodyState(highWatermark: 10)
        guard case .pause = s.receivedPart(Self.part(20)) else { Issue.record("not paused"); return }
        guard case .cancelRequest(resumeProducer: true, failReader: false) = s.abandoned() else { Issue.record("paused producer kept"); return }
        guard case .cancelRequest = s.receivedPart(Self.part(1)) else { Issue.record("parts after leaving are not refused"); return }
        #expect(Self.read(&s) == .fail)

        var w = StreamedBodyState(highWatermark: 10)
        #expect(Self.read(&w) == .wait)
        guard case .cancelRequest(resumeProducer: false, failReader: true) = w.abandoned() else { Issue.record("waiting reader kept"); return }

        var done = StreamedBodyState(highWatermark: 10)
        _ = done.finished()
        guard case .none = done.abandoned() else { Issue.record("a finished request cancelled"); return }
    }

    @Test("a body slower than its pace fails at the first part after a window that held too few bytes; faster windows start anew")
    func paceFailsATrickle() {
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let pace = BodyPace(minimumBytes: 100, window: .seconds(10))
        var s = StreamedBodyState(highWatermark: 1 << 20, pace: pace, now: t0)
        // 120 bytes in the first 10 s: enough; the window starts again at the part that closes it.
        for i in 0..<12 {
            guard case .proceed = s.receivedPart(Self.part(10), now: t0 + .milliseconds(Int64(i) * 800)) else { Issue.record("failed early at \(i)"); return }
        }
        guard case .proceed = s.receivedPart(Self.part(1), now: t0 + .seconds(10)) else { Issue.record("a window of 120 bytes failed"); return }
        // Then one byte every 3 s: the window from 10 s holds 4 bytes at 22 s, so the part at 22 s fails it.
        for second in [13, 16, 19] {
            guard case .proceed = s.receivedPart(Self.part(1), now: t0 + .seconds(Int64(second))) else { Issue.record("failed before the window ended"); return }
        }
        guard case .failRequest(let error) = s.receivedPart(Self.part(1), now: t0 + .seconds(22)) else { Issue.record("a trickle passed"); return }
        #expect(error.pace == pace)
    }

    @Test("time while Wharf itself paused the producer does not count against the upstream's pace")
    func paceIgnoresOwnPauses() {
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var s = StreamedBodyState(highWatermark: 1000, pace: BodyPace(minimumBytes: 100, window: .seconds(10)), now: t0)
        guard case .pause = s.receivedPart(Self.part(1000), now: t0 + .seconds(1)) else { Issue.record("not paused"); return }
        // The reader takes the batch only 60 s later (a slow disk): a new window starts then.
        guard case .takeAndResumeProducer = s.read(now: t0 + .seconds(61)) else { Issue.record("producer not resumed"); return }
        guard case .proceed = s.receivedPart(Self.part(50), now: t0 + .seconds(62)) else { Issue.record("the pause was counted"); return }
        guard case .proceed = s.receivedPart(Self.part(50), now: t0 + .seconds(70)) else { Issue.record("the pause was counted"); return }
        // 100 bytes in the window from 61 s is enough: the part at 85 s opens the next one.
        if case .failRequest = s.receivedPart(Self.part(1), now: t0 + .seconds(85)) { Issue.record("a window of 100 bytes failed") }
    }
}
