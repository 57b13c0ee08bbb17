import Synchronization

/// The bytes all fills together hold in memory (received, not yet written or hashed), as a value:
/// events go in, the waiters to resume come out. ``FillMemory`` holds one behind its lock.
///
/// Each ``FillWriter`` is bounded on its own (``FillWriter/maxQueuedBytes``); this bounds their sum,
/// which otherwise grows with the number of fills whenever the disk is slower than the upstreams.
struct FillMemoryMachine {
    typealias WaiterID = Int

    enum WaitAction: Equatable {
        case resumeNow
        case suspend
    }

    /// Above this many bytes held, a fill that has just queued more waits before reading on.
    let limit: Int
    private(set) var held = 0
    /// The most ever held at once.
    private(set) var peak = 0
    /// In the order they came.
    private(set) var waiters: [WaiterID] = []

    init(limit: Int) {
        precondition(limit > 0, "a fill memory limit must be positive")
        self.limit = limit
    }

    mutating func added(_ bytes: Int) {
        self.held += bytes
        self.peak = max(self.peak, self.held)
    }

    /// A fill asks whether it may read on: at once while at most `limit` bytes are held.
    mutating func waiterAdded(_ id: WaiterID) -> WaitAction {
        guard self.held > self.limit else { return .resumeNow }
        self.waiters.append(id)
        return .suspend
    }

    /// Bytes written and hashed leave; once at most half the limit is held, every waiter goes on
    /// (half, not the limit itself: fewer wake-ups, each followed by a larger batch of reads).
    mutating func removed(_ bytes: Int) -> [WaiterID] {
        self.held -= bytes
        precondition(self.held >= 0, "a fill released more memory than it queued")
        guard self.held <= self.limit / 2, !self.waiters.isEmpty else { return [] }
        defer { self.waiters = [] }
        return self.waiters
    }
}

/// The memory bound shared by every fill of a ``BlobFills`` (see ``FillMemoryMachine``). Every byte
/// added is removed once its writer has written and hashed it, also after a failure, so a fill
/// waiting here always goes on.
final class FillMemory: Sendable {
    /// 32 MiB: eight fills with full queues; one fast fill never waits for it.
    static let defaultLimit = 32 << 20

    private struct State {
        var machine: FillMemoryMachine
        var continuations: [FillMemoryMachine.WaiterID: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: FillMemoryMachine.WaiterID = 0
    }

    private let state: Mutex<State>

    init(limit: Int = FillMemory.defaultLimit) {
        self.state = Mutex(State(machine: FillMemoryMachine(limit: limit)))
    }

    var held: Int { self.state.withLock { $0.machine.held } }
    var peak: Int { self.state.withLock { $0.machine.peak } }

    /// Counts `bytes` in; true when all fills together now hold more than the limit (the caller
    /// then waits in ``waitForRoom()``; under it, no continuation is made at all).
    func add(_ bytes: Int) -> Bool {
        guard bytes > 0 else { return false }
        return self.state.withLock { s in
            s.machine.added(bytes)
            return s.machine.held > s.machine.limit
        }
    }

    func remove(_ bytes: Int) {
        guard bytes > 0 else { return }
        let ready = self.state.withLock { s in s.machine.removed(bytes).compactMap { s.continuations.removeValue(forKey: $0) } }
        for c in ready { c.resume() }
    }

    /// Returns once all fills together hold at most the limit (at once if they do now).
    func waitForRoom() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = self.state.withLock { s -> Bool in
                let id = s.nextWaiter
                s.nextWaiter += 1
                guard s.machine.waiterAdded(id) == .suspend else { return true }
                s.continuations[id] = c
                return false
            }
            if now { c.resume() }
        }
    }
}
