/// How many events one key (a client address, a user name) may have per window: failed password
/// checks for logins, upstream look-ups for the mirror.
public struct KeyedRate: Sendable, Hashable {
    /// Events allowed in a burst, and per `window` in the long run.
    public var failures: Int
    public var window: Duration

    public init(failures: Int, per window: Duration) {
        self.failures = max(1, failures)
        self.window = window > .zero ? window : .seconds(1)
    }

    /// Ten per minute: one more every six seconds once the burst is spent (failed logins).
    public static let `default` = KeyedRate(failures: 10, per: .seconds(60))

    /// Time one check costs (`window / failures`).
    var interval: Duration { self.window / self.failures }
}

/// A budget per key, as a value: a generic cell rate algorithm (a token bucket holding one instant
/// per key), with a bounded table. The one rate-limiting mechanism of the project.
///
/// An event is charged *before* it runs (``charge(_:now:)``) and may be refunded (``refund(_:now:)``),
/// so concurrent password checks cannot all slip through before the first one fails.
/// No I/O and no clock of its own: every event takes `now`.
public struct KeyedRateLimiter: Sendable {
    public let rate: KeyedRate
    /// Keys tracked at most; past it, the entries whose budget is furthest refilled go first.
    public let capacity: Int
    /// Per key: when its budget will be full again (the "theoretical arrival time"). Absent: full.
    private var refilledAt: [String: ContinuousClock.Instant] = [:]

    public init(rate: KeyedRate = .default, capacity: Int = 10_000) {
        self.rate = rate
        self.capacity = max(1, capacity)
    }

    /// Keys currently tracked.
    public var count: Int { self.refilledAt.count }

    /// Nil when one more check fits `key`'s budget; otherwise how long until it does.
    public func wait(for key: String, now: ContinuousClock.Instant) -> Duration? {
        let next = max(self.refilledAt[key] ?? now, now) + self.rate.interval
        let over = next - now - self.rate.window
        return over > .zero ? over : nil
    }

    /// True when `key` has nothing charged (no recent or running check).
    public func isClean(_ key: String, now: ContinuousClock.Instant) -> Bool {
        (self.refilledAt[key] ?? now) <= now
    }

    /// Spends one check of `key`'s budget (call after ``wait(for:now:)`` returned nil).
    public mutating func charge(_ key: String, now: ContinuousClock.Instant) {
        if self.refilledAt[key] == nil, self.refilledAt.count >= self.capacity { self.evict(now: now) }
        self.refilledAt[key] = max(self.refilledAt[key] ?? now, now) + self.rate.interval
    }

    /// Gives back one check (it succeeded, or never ran).
    public mutating func refund(_ key: String, now: ContinuousClock.Instant) {
        guard let at = self.refilledAt[key] else { return }
        let back = at - self.rate.interval
        self.refilledAt[key] = back > now ? back : nil
    }

    /// Drops full budgets; if that frees nothing, the quarter of the table closest to full.
    private mutating func evict(now: ContinuousClock.Instant) {
        self.refilledAt = self.refilledAt.filter { $0.value > now }
        guard self.refilledAt.count >= self.capacity else { return }
        let drop = self.refilledAt.sorted { $0.value < $1.value }.prefix(max(1, self.capacity / 4))
        for (key, _) in drop { self.refilledAt[key] = nil }
    }
}
