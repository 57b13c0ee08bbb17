import OCIDistribution

/// The state of one fill as a value: its phase, the bytes written, who follows it and who waits for
/// what. Events go in, actions come out; it does no I/O, takes no locks and reads no clock (instants
/// are passed in). ``BlobFill`` holds one behind its lock and carries out the actions.
struct FillStateMachine {
    typealias Phase = BlobFill.Phase
    typealias Condition = BlobFill.Condition
    typealias Snapshot = BlobFill.Snapshot
    typealias WaiterID = Int

    /// What the owner does after an event.
    enum Action {
        case none
        /// Resume these waiters (removed from the machine) with this snapshot.
        case resume([WaiterID], Snapshot)
    }

    /// What the owner does with a new waiter.
    enum WaitAction {
        /// The condition holds (or the fill ended): return this snapshot now.
        case resumeNow(Snapshot)
        /// Suspend until an event's ``Action/resume(_:_:)`` names this waiter.
        case suspend
    }

    /// What an orphan check found.
    enum OrphanAction: Equatable {
        case none
        /// Nobody follows the fill and it is too slow to be worth its upstream connection: stop it.
        case stopAbandoned
    }

    private(set) var phase: Phase = .connecting
    private(set) var written: Int64 = 0
    /// In the order they came.
    private var waiters: [(id: WaiterID, condition: Condition)] = []
    private(set) var followers = 0
    /// Since when (and from which byte) nobody has followed the fill; nil while someone does.
    private var orphanedSince: ContinuousClock.Instant?
    private var writtenWhenOrphaned: Int64 = 0

    /// A new fill, which nobody follows yet (as of `now`).
    init(now: ContinuousClock.Instant) {
        self.orphanedSince = now
    }

    var snapshot: Snapshot { Snapshot(phase: self.phase, written: self.written) }
    var waiterCount: Int { self.waiters.count }

    // MARK: Producer events

    /// The upstream answered; `size` is its announced length. Ignored once streaming or ended.
    mutating func started(size: Int64?) -> Action {
        guard case .connecting = self.phase else { return .none }
        self.phase = .streaming(size: size)
        return self.wakeReady()
    }

    /// `written` bytes are on disk (never goes back). Ignored once ended.
    mutating func progressed(to written: Int64) -> Action {
        guard !self.phase.isEnded, written > self.written else { return .none }
        self.written = written
        return self.wakeReady()
    }

    /// Every byte is written and verified. Ignored once ended (a failed fill stays failed).
    mutating func completed(size: Int64) -> Action {
        guard !self.phase.isEnded else { return .none }
        self.phase = .complete(size: size)
        self.written = size
        return self.wakeReady()
    }

    /// The fill stopped. Ignored once ended: verified bytes stay servable to followers.
    mutating func failed(_ error: RegistryError) -> Action {
        guard !self.phase.isEnded else { return .none }
        self.phase = .failed(error)
        return self.wakeReady()
    }

    // MARK: Followers and waiters

    mutating func followerAttached() {
        self.followers += 1
        self.orphanedSince = nil
    }

    /// A follower let go at `now`; the last one starts the orphan clock.
    mutating func followerDetached(now: ContinuousClock.Instant) {
        guard self.followers > 0 else { return }
        self.followers -= 1
        if self.followers == 0 {
            self.orphanedSince = now
            self.writtenWhenOrphaned = self.written
        }
    }

    /// A task waits for `condition`, under `id` (unique among this machine's waiters).
    mutating func waiterAdded(_ id: WaiterID, for condition: Condition) -> WaitAction {
        let snapshot = self.snapshot
        if Self.holds(condition, snapshot) { return .resumeNow(snapshot) }
        self.waiters.append((id, condition))
        return .suspend
    }

    /// The waiting task was cancelled: if it still waits, it is removed and resumed with the current
    /// snapshot (the fill goes on). Nothing if it was already resumed.
    mutating func waiterCancelled(_ id: WaiterID) -> Action {
        guard let i = self.waiters.firstIndex(where: { $0.id == id }) else { return .none }
        self.waiters.remove(at: i)
        return .resume([id], self.snapshot)
    }

    /// Whether, at `now`, the fill has had no follower for the policy's grace and brought in less
    /// than its floor over that time. Only a running fill is ever abandoned.
    func orphanCheck(now: ContinuousClock.Instant, policy: BlobFill.OrphanPolicy) -> OrphanAction {
        guard !self.phase.isEnded, self.followers == 0, let since = self.orphanedSince, now - since >= policy.grace else { return .none }
        let seconds = max(Double((now - since).components.seconds), 1)
        let rate = Double(self.written - self.writtenWhenOrphaned) / seconds
        return rate < Double(policy.floorBytesPerSecond) ? .stopAbandoned : .none
    }

    // MARK: Conditions

    private mutating func wakeReady() -> Action {
        let snapshot = self.snapshot
        var ready: [WaiterID] = []
        self.waiters.removeAll { w in
            guard Self.holds(w.condition, snapshot) else { return false }
            ready.append(w.id)
            return true
        }
        return ready.isEmpty ? .none : .resume(ready, snapshot)
    }

    static func holds(_ condition: Condition, _ s: Snapshot) -> Bool {
        switch s.phase {
        case .failed, .complete: return true
        case .connecting: return false
        case .streaming:
            switch condition {
            case .head: return true
            case .bytes(let n): return s.written >= n
            case .complete: return false
            }
        }
    }
}

extension BlobFill.Phase {
    /// Complete or failed: no event changes it any more.
    var isEnded: Bool {
        switch self {
        case .complete, .failed: true
        case .connecting, .streaming: false
        }
    }
}
