import OCIDistribution

/// Everything Wharf knows about one upstream's health, as one value: a ``CircuitBreaker`` per request
/// kind, the 429 holds (``RateLimitHolds``), reachability, the last rate-limit headers and the auth challenge.
///
/// Events go in and decisions come out; there is no I/O and no clock read (callers pass `now` and the
/// wall-clock seconds), so it is unit-tested without sockets. ``UpstreamClient`` keeps it behind one lock
/// and carries out the decisions: refuse a request, send a probe, tell the reachability observer.
struct UpstreamHealthMachine: Sendable {
    /// Whether a request may go now.
    enum Admission: Sendable, Equatable {
        /// Go. `trial` is set when this request is the half-open circuit's trial; pass it back.
        case proceed(trial: UInt64?)
        /// A 429 holds manifest requests of this repository (or the whole upstream) this much longer.
        case held(Duration)
        /// This kind's circuit is open.
        case circuitOpen
    }

    /// What the caller must do after an event.
    struct Decision: Sendable, Equatable {
        /// Send a probe for this kind and report it with ``probeFinished(_:verdict:reason:now:wallClock:)``.
        var probe: UpstreamRequestKind?
        /// Reachability changed: tell the observer.
        var reachabilityChanged: Reachability?

        static let none = Decision()
    }

    struct Reachability: Sendable, Equatable {
        let reachable: Bool
        let reason: String?
    }

    private var breakers: [UpstreamRequestKind: CircuitBreaker]
    private var holds: RateLimitHolds
    private var status = UpstreamHealth()
    /// The authentication challenge the upstream last sent (`WWW-Authenticate`): how to get a token.
    private(set) var challenge: AuthChallenge?
    /// When the challenge was last forgotten because no token could be had (see ``tokenFetchFailed(now:)``).
    private var challengeForgottenAt: ContinuousClock.Instant?
    private let cooldown: Duration

    init(threshold: Int = 3, cooldown: Duration = .seconds(10), maxHold: Duration = .seconds(300)) {
        let breaker = CircuitBreaker(threshold: threshold, cooldown: cooldown)
        self.breakers = Dictionary(uniqueKeysWithValues: UpstreamRequestKind.allCases.map { ($0, breaker) })
        self.holds = RateLimitHolds(maxHold: maxHold)
        self.cooldown = cooldown
    }

    // MARK: Events

    /// A request for `key` wants to go upstream.
    mutating func admit(_ key: UpstreamRequestKey, now: ContinuousClock.Instant) -> Admission {
        if key.kind == .manifest, let wait = self.holds.remaining(repository: key.repository, now: now) {
            return .held(wait)
        }
        switch self.breakers[key.kind, default: CircuitBreaker()].admit(now: now) {
        case .proceed: return .proceed(trial: nil)
        case .trial(let n): return .proceed(trial: n)
        case .refuse: return .circuitOpen
        }
    }

    /// The outcome of one exchange for `key` (`trial` as given by ``admit(_:now:)``).
    mutating func record(
        _ outcome: UpstreamOutcome, for key: UpstreamRequestKey, trial: UInt64?, now: ContinuousClock.Instant, wallClock: UInt64
    ) -> Decision {
        switch outcome {
        case .answered:
            self.breakers[key.kind]?.succeeded(trial: trial)
            return Decision(reachabilityChanged: self.setReachable(true, reason: nil, wallClock: wallClock))
        case .rateLimited(let retryAfter, let quotaExhausted):
            self.breakers[key.kind]?.succeeded(trial: trial)
            _ = self.holds.hold(repository: key.repository, retryAfter: retryAfter, quotaExhausted: quotaExhausted, now: now)
            return Decision(reachabilityChanged: self.setReachable(true, reason: nil, wallClock: wallClock))
        case .serverError(let status):
            self.noteError("HTTP \(status)", wallClock: wallClock)
            return self.fail(.suspect, key: key, trial: trial, reason: "HTTP \(status)", now: now, wallClock: wallClock)
        case .transportFailed(let reason):
            self.noteError(reason, wallClock: wallClock)
            return self.fail(.suspect, key: key, trial: trial, reason: reason, now: now, wallClock: wallClock)
        case .connectFailed(let reason):
            self.noteError(reason, wallClock: wallClock)
            var decision = self.fail(.certain, key: key, trial: trial, reason: reason, now: now, wallClock: wallClock)
            decision.reachabilityChanged = decision.reachabilityChanged ?? self.setReachable(false, reason: reason, wallClock: wallClock)
            return decision
        case .notSent:
            self.breakers[key.kind]?.released(trial: trial)
            return .none
        }
    }

    /// A request admitted with `trial` ended; if no outcome was recorded for it, the trial is given back.
    mutating func finished(_ kind: UpstreamRequestKind, trial: UInt64?) {
        self.breakers[kind]?.released(trial: trial)
    }

    /// The probe asked for by a ``Decision`` came back.
    mutating func probeFinished(
        _ kind: UpstreamRequestKind, verdict: CircuitBreaker.ProbeVerdict, reason: String?, now: ContinuousClock.Instant, wallClock: UInt64
    ) -> Decision {
        let opened = self.breakers[kind]?.probeFinished(verdict, now: now) ?? false
        switch verdict {
        case .healthy:
            return Decision(reachabilityChanged: self.setReachable(true, reason: nil, wallClock: wallClock))
        case .unhealthy where opened:
            let why = "\(kind.rawValue) requests failing and the probe failed too" + (reason.map { ": \($0)" } ?? "")
            self.noteError(why, wallClock: wallClock)
            return Decision(reachabilityChanged: self.setReachable(false, reason: why, wallClock: wallClock))
        case .unhealthy, .inconclusive:
            return .none
        }
    }

    /// Docker Hub's `RateLimit-Limit` / `RateLimit-Remaining`, as last seen.
    mutating func noteRateLimit(limit: String?, remaining: String?) {
        if let limit { self.status.rateLimitLimit = limit }
        if let remaining { self.status.rateLimitRemaining = remaining }
    }

    // MARK: State

    /// The `/stats` view at `now`.
    func health(now: ContinuousClock.Instant) -> UpstreamHealth {
        var h = self.status
        let states = self.breakers.mapValues(\.state)
        h.circuits = Dictionary(uniqueKeysWithValues: states.map { ($0.key.rawValue, $0.value) })
        h.circuit = states.values.contains(.open) ? .open : states.values.contains(.halfOpen) ? .halfOpen : .closed
        h.rateLimitHold = self.holds.holdsUpstream(now: now) ? "upstream" : self.holds.heldRepositories(now: now) > 0 ? "repositories" : nil
        return h
    }

    /// The breaker state of one kind.
    func circuit(_ kind: UpstreamRequestKind) -> CircuitBreaker.State { self.breakers[kind]?.state ?? .closed }

    // MARK: Helpers

    private mutating func fail(
        _ evidence: CircuitBreaker.Evidence, key: UpstreamRequestKey, trial: UInt64?, reason: String, now: ContinuousClock.Instant,
        wallClock: UInt64
    ) -> Decision {
        switch self.breakers[key.kind]?.failed(evidence, key: key.breakerKey, trial: trial, now: now) ?? .none {
        case .none:
            return .none
        case .probe:
            return Decision(probe: key.kind)
        case .opened:
            return Decision(reachabilityChanged: self.setReachable(false, reason: reason, wallClock: wallClock))
        }
    }

    private mutating func noteError(_ reason: String, wallClock: UInt64) {
        self.status.lastErrorAt = wallClock
        self.status.lastError = reason
    }

    /// Sets reachability; returns the change worth telling (not the first sight of a reachable upstream).
    private mutating func setReachable(_ reachable: Bool, reason: String?, wallClock: UInt64) -> Reachability? {
        let before = self.status.reachable
        self.status.reachable = reachable
        if before != reachable { self.status.stateSince = wallClock }
        if reachable { self.status.lastSuccessAt = wallClock }
        guard before != reachable, !(before == nil && reachable) else { return nil }
        return Reachability(reachable: reachable, reason: reason)
    }
}

extension UpstreamHealthMachine {
    /// The upstream answered 401 with this challenge (or `/v2/` announced it): tokens come from its realm.
    mutating func challengeLearned(_ challenge: AuthChallenge) { self.challenge = challenge }

    /// No token could be had at the challenge's realm (unreachable, an error answer, no token in it, or
    /// the token circuit open). The challenge may be stale or bogus — one 401 from a glitch naming a dead
    /// realm would otherwise hold every later request — so it is forgotten, at most once per cooldown,
    /// for `/v2/` to be asked again. Returns whether it was.
    mutating func tokenFetchFailed(now: ContinuousClock.Instant) -> Bool {
        guard self.challenge != nil else { return false }
        if let last = self.challengeForgottenAt, now < last + self.cooldown { return false }
        self.challengeForgottenAt = now
        self.challenge = nil
        return true
    }
}
