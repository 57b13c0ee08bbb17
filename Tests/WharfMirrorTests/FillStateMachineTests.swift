import OCIDistribution
import Testing
@testable import WharfMirror

/// The fill's state machine on its own: events in, actions out, no sockets, no clocks, no sleeps.
@Suite(.tags(.unit)) struct FillStateMachineTests {
    typealias Machine = FillStateMachine
    static let t0 = ContinuousClock.now
    static let boom = RegistryError(.blobUnknown, "upstream went away")

    /// The four phases a fill can be in, each reached through events from a new machine.
    enum Start: String, CaseIterable, CustomTestStringConvertible {
        case connecting, streaming, complete, failed
        var testDescription: String { self.rawValue }

        func machine() -> Machine {
            var m = Machine(now: FillStateMachineTests.t0)
            switch self {
            case .connecting: break
            case .streaming:
                _ = m.started(size: 100)
                _ = m.progressed(to: 10)
            case .complete:
                _ = m.started(size: 100)
                _ = m.completed(size: 100)
            case .failed:
                _ = m.started(size: 100)
                _ = m.failed(FillStateMachineTests.boom)
            }
            return m
        }
    }

    static func name(_ phase: BlobFill.Phase) -> String {
        switch phase {
        case .connecting: "connecting"
        case .streaming(let size): "streaming(\(size.map(String.init) ?? "nil"))"
        case .complete(let size): "complete(\(size))"
        case .failed: "failed"
        }
    }

    static func resumed(_ action: Machine.Action) -> [Machine.WaiterID] {
        if case .resume(let ids, _) = action { return ids }
        return []
    }

    // MARK: Every producer event in every phase

    @Test("started: connecting → streaming, ignored in every other phase", arguments: Start.allCases)
    func startedInEveryPhase(_ start: Start) {
        var m = start.machine()
        let before = (Self.name(m.phase), m.written)
        _ = m.started(size: 5)
        switch start {
        case .connecting: #expect(Self.name(m.phase) == "streaming(5)")
        default: #expect((Self.name(m.phase), m.written) == before)
        }
    }

    @Test("progressed: counts up in connecting and streaming, never back; ignored once ended", arguments: Start.allCases)
    func progressedInEveryPhase(_ start: Start) {
        var m = start.machine()
        let before = (Self.name(m.phase), m.written)
        _ = m.progressed(to: 50)
        switch start {
        case .connecting, .streaming:
            #expect(m.written == 50 && Self.name(m.phase) == before.0)
            _ = m.progressed(to: 20)
            #expect(m.written == 50, "written went back")
        case .complete, .failed:
            #expect((Self.name(m.phase), m.written) == before)
        }
    }

    @Test("completed: ends a running fill with its size; a complete or failed fill stays as it is", arguments: Start.allCases)
    func completedInEveryPhase(_ start: Start) {
        var m = start.machine()
        let before = (Self.name(m.phase), m.written)
        _ = m.completed(size: 70)
        switch start {
        case .connecting, .streaming: #expect(Self.name(m.phase) == "complete(70)" && m.written == 70)
        case .complete, .failed: #expect((Self.name(m.phase), m.written) == before)
        }
    }

    @Test("failed: ends a running fill; a complete fill stays complete (verified bytes stay servable)", arguments: Start.allCases)
    func failedInEveryPhase(_ start: Start) {
        var m = start.machine()
        let before = (Self.name(m.phase), m.written)
        _ = m.failed(Self.boom)
        switch start {
        case .connecting, .streaming: #expect(Self.name(m.phase) == "failed")
        case .complete, .failed: #expect((Self.name(m.phase), m.written) == before)
        }
    }

    // MARK: Waiters

    @Test("a new waiter: which conditions hold at once in which phase", arguments: Start.allCases)
    func waiterAddedInEveryPhase(_ start: Start) {
        // streaming has 10 bytes written.
        let expectations: [(BlobFill.Condition, Bool)] = switch start {
        case .connecting: [(.head, false), (.bytes(0), false), (.complete, false)]
        case .streaming: [(.head, true), (.bytes(10), true), (.bytes(11), false), (.complete, false)]
        case .complete, .failed: [(.head, true), (.bytes(1_000), true), (.complete, true)]
        }
        for (id, (condition, now)) in expectations.enumerated() {
            var m = start.machine()
            switch m.waiterAdded(id, for: condition) {
            case .resumeNow: #expect(now, "\(condition) should wait in \(start)")
            case .suspend:
                #expect(!now, "\(condition) should hold at once in \(start)")
                #expect(m.waiterCount == 1)
            }
        }
    }

    @Test("waiters by byte offset are resumed exactly when their bytes are written, in order, once")
    func waitersByOffset() {
        var m = Machine(now: Self.t0)
        guard case .suspend = m.waiterAdded(1, for: .head) else { Issue.record("head before start"); return }
        for (id, offset) in [(2, Int64(100)), (3, 50), (4, 100), (5, 300)] {
            guard case .suspend = m.waiterAdded(id, for: .bytes(offset)) else { Issue.record("bytes(\(offset)) held at once"); return }
        }
        guard case .suspend = m.waiterAdded(6, for: .complete) else { Issue.record("complete held at once"); return }

        #expect(Self.resumed(m.started(size: 300)) == [1])
        #expect(Self.resumed(m.progressed(to: 49)) == [])
        guard case .resume(let ids, let snapshot) = m.progressed(to: 100) else { Issue.record("nothing resumed at 100"); return }
        #expect(ids == [2, 3, 4] && snapshot.written == 100)
        #expect(Self.resumed(m.progressed(to: 100)) == [], "resumed twice")
        #expect(Self.resumed(m.progressed(to: 299)) == [])
        #expect(Self.resumed(m.progressed(to: 300)) == [5])
        #expect(m.waiterCount == 1)
        guard case .resume(let last, let done) = m.completed(size: 300) else { Issue.record("complete resumed nobody"); return }
        #expect(last == [6] && Self.name(done.phase) == "complete(300)" && m.waiterCount == 0)
    }

    @Test("a failure resumes every waiter with the failure; a later completion changes nothing")
    func failureResumesEveryone() {
        var m = Machine(now: Self.t0)
        _ = m.started(size: nil)
        _ = m.waiterAdded(1, for: .bytes(10))
        _ = m.waiterAdded(2, for: .complete)
        guard case .resume(let ids, let snapshot) = m.failed(Self.boom) else { Issue.record("failure resumed nobody"); return }
        #expect(ids == [1, 2] && Self.name(snapshot.phase) == "failed")
        #expect(Self.resumed(m.completed(size: 10)) == [] && Self.name(m.phase) == "failed")
    }

    @Test("failure after completion keeps the fill complete for waiters that come later")
    func failureAfterCompletion() {
        var m = Machine(now: Self.t0)
        _ = m.started(size: 10)
        _ = m.completed(size: 10)
        #expect(Self.resumed(m.failed(Self.boom)) == [])
        guard case .resumeNow(let s) = m.waiterAdded(1, for: .complete) else { Issue.record("a complete fill made a waiter wait"); return }
        #expect(Self.name(s.phase) == "complete(10)" && s.written == 10)
    }

    @Test("a cancelled waiter is removed and resumed with the current snapshot; the others and the fill go on")
    func cancellation() {
        var m = Machine(now: Self.t0)
        _ = m.started(size: 100)
        _ = m.progressed(to: 40)
        _ = m.waiterAdded(1, for: .bytes(80))
        _ = m.waiterAdded(2, for: .bytes(60))
        guard case .resume(let ids, let s) = m.waiterCancelled(1) else { Issue.record("cancel resumed nobody"); return }
        #expect(ids == [1] && s.written == 40 && Self.name(s.phase) == "streaming(100)")
        #expect(Self.resumed(m.waiterCancelled(1)) == [], "a waiter was resumed twice")
        #expect(Self.resumed(m.waiterCancelled(99)) == [], "an unknown waiter was resumed")
        #expect(Self.resumed(m.progressed(to: 100)) == [2], "the cancelled waiter was resumed again, or the other was lost")
        #expect(Self.resumed(m.completed(size: 100)) == [] && Self.name(m.phase) == "complete(100)")
    }

    @Test("cancelling a waiter that was already resumed does nothing")
    func cancelAfterResume() {
        var m = Machine(now: Self.t0)
        _ = m.waiterAdded(7, for: .head)
        #expect(Self.resumed(m.started(size: 1)) == [7])
        #expect(Self.resumed(m.waiterCancelled(7)) == [])
    }

    // MARK: Followers and the orphan policy

    static let policy = BlobFill.OrphanPolicy(grace: .seconds(30), floorBytesPerSecond: 1_000)

    @Test("a fill nobody ever followed is stopped after the grace if it is slower than the floor")
    func neverFollowed() {
        var m = Machine(now: Self.t0)
        _ = m.started(size: nil)
        #expect(m.orphanCheck(now: Self.t0 + .seconds(29), policy: Self.policy) == .none, "stopped before the grace")
        #expect(m.orphanCheck(now: Self.t0 + .seconds(30), policy: Self.policy) == .stopAbandoned)
        _ = m.progressed(to: 40_000)  // 40 kB in 40 s: at the floor, not below it
        #expect(m.orphanCheck(now: Self.t0 + .seconds(40), policy: Self.policy) == .none)
    }

    @Test("a followed fill is never abandoned; the orphan clock starts when the last follower lets go")
    func followers() {
        var m = Machine(now: Self.t0)
        _ = m.started(size: nil)
        m.followerAttached()
        m.followerAttached()
        #expect(m.orphanCheck(now: Self.t0 + .seconds(3_600), policy: Self.policy) == .none)
        m.followerDetached(now: Self.t0 + .seconds(100))
        #expect(m.followers == 1)
        #expect(m.orphanCheck(now: Self.t0 + .seconds(3_600), policy: Self.policy) == .none, "abandoned with a follower")
        _ = m.progressed(to: 5_000)
        m.followerDetached(now: Self.t0 + .seconds(200))
        #expect(m.orphanCheck(now: Self.t0 + .seconds(229), policy: Self.policy) == .none, "the grace counted from the first detach")
        // Counted from the bytes written when orphaned: 5,000 earlier bytes do not make it fast.
        #expect(m.orphanCheck(now: Self.t0 + .seconds(230), policy: Self.policy) == .stopAbandoned)
        _ = m.progressed(to: 5_000 + 31_000)
        #expect(m.orphanCheck(now: Self.t0 + .seconds(230), policy: Self.policy) == .none, "31 kB in 30 s is over the floor")
        m.followerAttached()
        #expect(m.orphanCheck(now: Self.t0 + .seconds(10_000), policy: Self.policy) == .none)
    }

    @Test("more detaches than attaches do not go below zero followers")
    func extraDetach() {
        var m = Machine(now: Self.t0)
        m.followerDetached(now: Self.t0 + .seconds(1))
        #expect(m.followers == 0)
        #expect(m.orphanCheck(now: Self.t0 + .seconds(30), policy: Self.policy) == .stopAbandoned, "the extra detach restarted the clock")
    }

    @Test("an ended fill is never reported abandoned", arguments: [Start.complete, .failed])
    func endedNotAbandoned(_ start: Start) {
        let m = start.machine()
        #expect(m.orphanCheck(now: Self.t0 + .seconds(3_600), policy: Self.policy) == .none)
    }
}
