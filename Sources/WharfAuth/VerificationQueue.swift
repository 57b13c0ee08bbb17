/// Admission to the password-hash workers, as a value: at most `workers` checks run at once, and at
/// most a few wait, in two lanes.
///
/// Attempts from a client address and user with no recent failure wait in the `fresh` lane, which
/// is always served first; the rest wait in the `suspect` lane. Past a lane's cap an attempt is
/// rejected at once, so a flood of wrong passwords costs its senders a quick refusal instead of
/// costing everyone a growing queue. `Waiter` is whatever resumes a caller (a continuation in
/// ``BcryptWorkers``, a number in tests).
public struct VerificationQueue<Waiter> {
    /// Which queue an attempt waits in.
    public enum Lane: Sendable, Hashable {
        case fresh, suspect
    }

    /// What to do with a submitted attempt.
    public enum Admission: Sendable, Hashable {
        /// A worker is free: run now, then call ``finished()``.
        case run
        /// Queued: run when ``finished()`` hands this waiter a worker.
        case wait
        /// The lane is full: refuse without checking.
        case reject
    }

    /// Sizes of the pool and of each lane's queue.
    public struct Limits: Sendable, Hashable {
        public var workers: Int
        public var maxFreshWaiting: Int
        public var maxSuspectWaiting: Int

        public init(workers: Int, maxFreshWaiting: Int, maxSuspectWaiting: Int) {
            self.workers = max(1, workers)
            self.maxFreshWaiting = max(0, maxFreshWaiting)
            self.maxSuspectWaiting = max(0, maxSuspectWaiting)
        }
    }

    public let limits: Limits
    public private(set) var running = 0
    /// Short queues (a few dozen at most), so removing from the front is cheap.
    private var fresh: [Waiter] = []
    private var suspect: [Waiter] = []

    public init(limits: Limits) { self.limits = limits }

    /// Attempts waiting in each lane.
    public var waiting: (fresh: Int, suspect: Int) { (self.fresh.count, self.suspect.count) }

    /// An attempt arrives.
    public mutating func submit(_ waiter: Waiter, lane: Lane) -> Admission {
        if self.running < self.limits.workers {
            self.running += 1
            return .run
        }
        switch lane {
        case .fresh:
            guard self.waiting.fresh < self.limits.maxFreshWaiting else { return .reject }
            self.fresh.append(waiter)
        case .suspect:
            guard self.waiting.suspect < self.limits.maxSuspectWaiting else { return .reject }
            self.suspect.append(waiter)
        }
        return .wait
    }

    /// A running check ended: the waiter that takes over its worker (fresh lane first), if any.
    public mutating func finished() -> Waiter? {
        if !self.fresh.isEmpty { return self.fresh.removeFirst() }
        if !self.suspect.isEmpty { return self.suspect.removeFirst() }
        self.running = max(0, self.running - 1)
        return nil
    }
}
