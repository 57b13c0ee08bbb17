/// Per-upstream circuit breaker, as a plain state machine (no I/O): after `threshold` consecutive
/// failures (transport errors, 5xx) the circuit opens for `cooldown`, and requests fail at once
/// instead of each paying a timeout. After the cooldown one trial request is let through
/// (half-open); its outcome closes or re-opens the circuit.
public struct CircuitBreaker: Sendable {
    public enum State: String, Sendable, Codable { case closed, open, halfOpen = "half-open" }

    public private(set) var state: State = .closed
    private var failures = 0
    private var openUntil: ContinuousClock.Instant = .now
    private var trialInFlight = false
    let threshold: Int
    let cooldown: Duration

    public init(threshold: Int = 3, cooldown: Duration = .seconds(10)) {
        self.threshold = threshold
        self.cooldown = cooldown
    }

    /// Whether a request may go upstream now.
    public mutating func allowRequest(now: ContinuousClock.Instant = .now) -> Bool {
        switch self.state {
        case .closed:
            return true
        case .open:
            guard now >= self.openUntil else { return false }
            self.state = .halfOpen
            self.trialInFlight = true
            return true
        case .halfOpen:
            guard !self.trialInFlight else { return false }
            self.trialInFlight = true
            return true
        }
    }

    public mutating func recordSuccess() {
        self.state = .closed
        self.failures = 0
        self.trialInFlight = false
    }

    public mutating func recordFailure(now: ContinuousClock.Instant = .now) {
        self.failures += 1
        self.trialInFlight = false
        if self.state == .halfOpen || self.failures >= self.threshold {
            self.open(for: self.cooldown, now: now)
        }
    }

    private mutating func open(for duration: Duration, now: ContinuousClock.Instant) {
        self.state = .open
        self.openUntil = max(self.openUntil, now + duration)
    }
}
