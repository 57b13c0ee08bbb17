/// Holds after `429 Too Many Requests`, scoped to what the upstream said and capped. A value with no
/// I/O; part of ``UpstreamHealthMachine``.
///
/// - A 429 holds that repository's manifest requests (the kind Docker Hub counts) until its
///   `Retry-After` has passed.
/// - It holds the whole upstream when the answer says the whole client's quota is spent (Docker Hub's
///   `RateLimit-Remaining: 0`), when it concerns no repository (`/v2/`), or when a second repository
///   is rate limited while the first one's hold lasts: Docker Hub limits per client, not per repository.
/// - No hold lasts longer than `maxHold` (5 minutes), whatever `Retry-After` says, so one answer
///   cannot stop an upstream for an hour; if the limit is still there, the next 429 sets a new hold.
struct RateLimitHolds: Sendable {
    /// What a 429 held.
    enum Scope: Sendable, Equatable {
        case repository(String)
        case upstream
    }

    static let maxRepositories = 1024

    let maxHold: Duration
    private var repositories: [String: ContinuousClock.Instant] = [:]
    private var upstreamUntil: ContinuousClock.Instant?

    /// The default cap on a hold, in seconds; also the longest `Retry-After` a client is told.
    static let longestHold: Int64 = 300

    init(maxHold: Duration = .seconds(Self.longestHold)) {
        self.maxHold = maxHold
    }

    /// Records a 429 for `repository` (nil: not about one repository).
    mutating func hold(repository: String?, retryAfter: Duration, quotaExhausted: Bool, now: ContinuousClock.Instant) -> Scope {
        let until = now + min(max(retryAfter, .zero), self.maxHold)
        self.repositories = self.repositories.filter { $0.value > now }
        guard let repository, !quotaExhausted else { return self.holdUpstream(until: until) }
        let others = self.repositories.keys.contains { $0 != repository }
        if self.repositories.count < Self.maxRepositories || self.repositories[repository] != nil {
            self.repositories[repository] = max(self.repositories[repository] ?? until, until)
        }
        return others ? self.holdUpstream(until: until) : .repository(repository)
    }

    private mutating func holdUpstream(until: ContinuousClock.Instant) -> Scope {
        self.upstreamUntil = max(self.upstreamUntil ?? until, until)
        return .upstream
    }

    /// How much longer a manifest request for `repository` must wait; nil when it may go.
    func remaining(repository: String?, now: ContinuousClock.Instant) -> Duration? {
        var until = self.upstreamUntil
        if let repository, let r = self.repositories[repository] { until = max(until ?? r, r) }
        guard let until, now < until else { return nil }
        return until - now
    }

    /// Whether the whole upstream is held at `now`.
    func holdsUpstream(now: ContinuousClock.Instant) -> Bool {
        self.upstreamUntil.map { now < $0 } ?? false
    }

    /// Repositories held at `now` (the whole-upstream hold not included).
    func heldRepositories(now: ContinuousClock.Instant) -> Int {
        self.repositories.values.filter { now < $0 }.count
    }
}
