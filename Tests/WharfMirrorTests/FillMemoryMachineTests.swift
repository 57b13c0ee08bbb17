import Testing
@testable import WharfMirror

/// ``FillMemoryMachine``: the bound on what all fills hold in memory, without fills or threads.
@Suite(.tags(.unit)) struct FillMemoryMachineTests {
    @Test("at or under the limit a fill goes on; over it, it waits")
    func waitsOnlyOverLimit() {
        var m = FillMemoryMachine(limit: 100)
        m.added(100)
        #expect(m.waiterAdded(1) == .resumeNow)
        m.added(1)
        #expect(m.waiterAdded(2) == .suspend)
        #expect(m.waiters == [2])
        #expect(m.peak == 101)
    }

    @Test("waiters go on together, in order, once at most half the limit is held; not before")
    func resumesAtHalf() {
        var m = FillMemoryMachine(limit: 100)
        m.added(150)
        #expect(m.waiterAdded(1) == .suspend)
        #expect(m.waiterAdded(2) == .suspend)
        #expect(m.removed(60).isEmpty, "90 held: under the limit but over half")
        #expect(m.removed(40) == [1, 2])
        #expect(m.waiters.isEmpty)
        #expect(m.removed(50).isEmpty, "nobody left to resume")
        #expect(m.held == 0)
        #expect(m.peak == 150)
    }

    @Test("a waiter that comes once the total fell goes on at once")
    func lateWaiter() {
        var m = FillMemoryMachine(limit: 10)
        m.added(30)
        #expect(m.waiterAdded(1) == .suspend)
        #expect(m.removed(25) == [1])
        #expect(m.waiterAdded(2) == .resumeNow)
    }
}
