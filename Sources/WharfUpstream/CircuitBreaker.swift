/// The circuit breaker of one kind of upstream request, as a plain state machine: no I/O, no clock
/// reads (every event takes `now`).
///
/// Only evidence that the *upstream* is unhealthy opens it, never evidence that one request is bad:
///
/// - **Certain** evidence: a connection to the upstream's own host could not be made (refused,
///   unreachable, connect timeout). Nobody can cause that with a request of their choosing, so
///   `threshold` of them with no success in between open the circuit.
/// - **Suspect** evidence: a 5xx, a timeout waiting for an answer, a broken connection, or a transport
///   failure at a redirect target. These can be specific to one request — Distribution answers 500 to
///   `GET /v2/<repo>/manifests/<layer digest>` — so they are remembered by request key and the same
///   key again adds nothing. Once `threshold` distinct keys failed with no success in between, the
///   breaker asks for a **probe**: a request that succeeds for everyone (`GET /v2/`, or an anonymous
///   token). Only a failed probe opens the circuit. A probe that succeeds makes suspect evidence count
///   for nothing during `cooldown`, so clients cannot trigger more than one probe per cooldown.
/// - Any success of this kind (an answer below 500, 429 included) clears the evidence.
///
/// Once open, requests fail at once for `cooldown`; then one trial request goes through (half-open).
/// Its success closes the circuit and certain evidence re-opens it, but a suspect failure only asks
/// for a probe again: a client whose own request fails cannot keep the circuit open. Outcomes of
/// requests other than the trial are ignored while open or half-open.
public struct CircuitBreaker: Sendable {
    /// What `/stats` shows. A breaker waiting for its probe is still closed.
    public enum State: String, Sendable, Codable { case closed, open, halfOpen = "half-open" }

    /// How strongly a failure says the upstream itself is unhealthy (see the type's documentation).
    enum Evidence: Sendable, Equatable { case certain, suspect }

    /// Whether a request may go now. A trial carries a number, reported back with its outcome.
    enum Admission: Sendable, Equatable { case proceed, trial(UInt64), refuse }

    /// What the caller must do after a failure.
    enum Action: Sendable, Equatable {
        case none
        /// Send a probe and report it with ``probeFinished(_:now:)``.
        case probe
        /// The circuit just opened.
        case opened
    }

    /// The result of a probe.
    enum ProbeVerdict: Sendable, Equatable {
        case healthy
        case unhealthy
        /// The probe could not be sent (Wharf's own pool was busy): no conclusion either way.
        case inconclusive
    }

    private enum Phase: Sendable, Equatable {
        case closed(certain: Int, suspectKeys: Set<String>)
        /// A probe is out; requests still go through.
        case verifying
        case open(until: ContinuousClock.Instant)
        /// `trial`: the number of the trial in flight, if any.
        case halfOpen(trial: UInt64?)
    }

    private var phase: Phase = .closed(certain: 0, suspectKeys: [])
    /// Until then suspect evidence is ignored: a probe just said the upstream is fine.
    private var trustedUntil: ContinuousClock.Instant?
    private var trials: UInt64 = 0
    let threshold: Int
    let cooldown: Duration

    public init(threshold: Int = 3, cooldown: Duration = .seconds(10)) {
        self.threshold = max(1, threshold)
        self.cooldown = cooldown
    }

    public var state: State {
        switch self.phase {
        case .closed, .verifying: .closed
        case .open: .open
        case .halfOpen: .halfOpen
        }
    }

    /// True while a probe is out.
    var isVerifying: Bool { self.phase == .verifying }

    /// Whether a request may go upstream now.
    mutating func admit(now: ContinuousClock.Instant) -> Admission {
        switch self.phase {
        case .closed, .verifying:
            return .proceed
        case .open(let until):
            guard now >= until else { return .refuse }
            return self.startTrial()
        case .halfOpen(let trial):
            guard trial == nil else { return .refuse }
            return self.startTrial()
        }
    }

    private mutating func startTrial() -> Admission {
        self.trials += 1
        self.phase = .halfOpen(trial: self.trials)
        return .trial(self.trials)
    }

    /// A request of this kind was answered (below 500). While half-open only the trial counts.
    mutating func succeeded(trial: UInt64?) {
        if case .halfOpen(let current) = self.phase, current == nil || current != trial { return }
        if case .open = self.phase { return }
        self.phase = .closed(certain: 0, suspectKeys: [])
    }

    /// A request of this kind failed.
    mutating func failed(_ evidence: Evidence, key: String, trial: UInt64?, now: ContinuousClock.Instant) -> Action {
        switch self.phase {
        case .closed(var certain, var keys):
            switch evidence {
            case .certain:
                certain += 1
            case .suspect:
                if let trusted = self.trustedUntil, now < trusted { return .none }
                keys.insert(key)
            }
            guard certain + keys.count >= self.threshold else {
                self.phase = .closed(certain: certain, suspectKeys: keys)
                return .none
            }
            if keys.isEmpty {
                self.open(now: now)
                return .opened
            }
            self.phase = .verifying
            return .probe
        case .verifying, .open:
            return .none
        case .halfOpen(let current):
            guard let current, current == trial else { return .none }
            if evidence == .certain {
                self.open(now: now)
                return .opened
            }
            self.phase = .verifying
            return .probe
        }
    }

    /// The request never reached the upstream (pool wait, caller gone), or it ended without an
    /// outcome: a trial it held is given back so the next request becomes the trial.
    mutating func released(trial: UInt64?) {
        guard let trial, case .halfOpen(let current) = self.phase, current == trial else { return }
        self.phase = .halfOpen(trial: nil)
    }

    /// The probe asked for by ``failed(_:key:trial:now:)`` came back. Returns true if the circuit opened.
    mutating func probeFinished(_ verdict: ProbeVerdict, now: ContinuousClock.Instant) -> Bool {
        guard self.phase == .verifying else { return false }
        switch verdict {
        case .healthy:
            self.phase = .closed(certain: 0, suspectKeys: [])
            self.trustedUntil = now + self.cooldown
            return false
        case .inconclusive:
            self.phase = .closed(certain: 0, suspectKeys: [])
            return false
        case .unhealthy:
            self.open(now: now)
            return true
        }
    }

    private mutating func open(now: ContinuousClock.Instant) {
        self.phase = .open(until: now + self.cooldown)
        self.trustedUntil = nil
    }
}
