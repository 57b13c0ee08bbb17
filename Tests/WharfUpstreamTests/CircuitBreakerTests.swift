import Testing
@testable import WharfUpstream

/// The breaker of one request kind: what opens it, what cannot, and how it recovers.
@Suite(.tags(.unit)) struct CircuitBreakerTests {
    let t0 = ContinuousClock.now

    @Test("three connection failures open it; after the cooldown one trial goes; its success closes it")
    func certainEvidenceOpens() {
        var b = CircuitBreaker(threshold: 3, cooldown: .seconds(10))
        #expect(b.admit(now: t0) == .proceed)
        #expect(b.failed(.certain, key: "a", trial: nil, now: t0) == .none)
        #expect(b.failed(.certain, key: "a", trial: nil, now: t0) == .none)
        #expect(b.state == .closed)
        #expect(b.failed(.certain, key: "a", trial: nil, now: t0) == .opened)
        #expect(b.state == .open)
        #expect(b.admit(now: t0 + .seconds(5)) == .refuse)
        #expect(b.admit(now: t0 + .seconds(11)) == .trial(1))
        #expect(b.state == .halfOpen)
        #expect(b.admit(now: t0 + .seconds(11)) == .refuse, "one trial at a time")
        b.succeeded(trial: 1)
        #expect(b.state == .closed)
        #expect(b.admit(now: t0 + .seconds(11)) == .proceed)
    }

    @Test("the same failing request, however often, never opens it nor asks for a probe")
    func sameKeyRepeatingAddsNothing() {
        var b = CircuitBreaker(threshold: 3, cooldown: .seconds(10))
        for i in 0..<1000 {
            #expect(b.failed(.suspect, key: "team/app\u{0}sha256:layer", trial: nil, now: t0 + .milliseconds(i)) == .none)
        }
        #expect(b.state == .closed)
        #expect(!b.isVerifying)
    }

    @Test("5xx on three distinct requests asks for a probe; a healthy probe keeps it closed and mutes 5xx for the cooldown")
    func distinctKeysProbe() {
        var b = CircuitBreaker(threshold: 3, cooldown: .seconds(10))
        #expect(b.failed(.suspect, key: "k1", trial: nil, now: t0) == .none)
        #expect(b.failed(.suspect, key: "k2", trial: nil, now: t0) == .none)
        #expect(b.failed(.suspect, key: "k3", trial: nil, now: t0) == .probe)
        #expect(b.isVerifying && b.state == .closed)
        #expect(b.admit(now: t0) == .proceed, "requests keep going while the probe is out")
        #expect(b.failed(.suspect, key: "k4", trial: nil, now: t0) == .none, "one probe at a time")
        let opened = b.probeFinished(.healthy, now: t0 + .seconds(1))
        #expect(!opened)
        #expect(b.state == .closed && !b.isVerifying)
        for i in 0..<50 { #expect(b.failed(.suspect, key: "k\(i + 10)", trial: nil, now: t0 + .seconds(2)) == .none) }
        // After the trust window, fresh suspect evidence may ask again.
        for i in 0..<2 { #expect(b.failed(.suspect, key: "late\(i)", trial: nil, now: t0 + .seconds(12)) == .none) }
        #expect(b.failed(.suspect, key: "late2", trial: nil, now: t0 + .seconds(12)) == .probe)
    }

    @Test("a failed probe opens it")
    func failedProbeOpens() {
        var b = CircuitBreaker(threshold: 3, cooldown: .seconds(10))
        for k in ["k1", "k2"] { _ = b.failed(.suspect, key: k, trial: nil, now: t0) }
        #expect(b.failed(.suspect, key: "k3", trial: nil, now: t0) == .probe)
        let opened = b.probeFinished(.unhealthy, now: t0 + .seconds(1))
        #expect(opened)
        #expect(b.state == .open)
        #expect(b.admit(now: t0 + .seconds(10)) == .refuse)
        #expect(b.admit(now: t0 + .seconds(11)) == .trial(1))
    }

    @Test("an inconclusive probe (Wharf's own pool busy) neither opens nor mutes")
    func inconclusiveProbe() {
        var b = CircuitBreaker(threshold: 2, cooldown: .seconds(10))
        _ = b.failed(.suspect, key: "k1", trial: nil, now: t0)
        #expect(b.failed(.suspect, key: "k2", trial: nil, now: t0) == .probe)
        let opened = b.probeFinished(.inconclusive, now: t0)
        #expect(!opened)
        #expect(b.state == .closed)
        _ = b.failed(.suspect, key: "k3", trial: nil, now: t0)
        #expect(b.failed(.suspect, key: "k4", trial: nil, now: t0) == .probe)
    }

    @Test("a success in between clears the evidence")
    func successClears() {
        var b = CircuitBreaker(threshold: 3, cooldown: .seconds(10))
        _ = b.failed(.certain, key: "a", trial: nil, now: t0)
        _ = b.failed(.suspect, key: "b", trial: nil, now: t0)
        b.succeeded(trial: nil)
        _ = b.failed(.certain, key: "a", trial: nil, now: t0)
        #expect(b.failed(.suspect, key: "c", trial: nil, now: t0) == .none)
        #expect(b.state == .closed)
    }

    @Test("half-open: a client's 5xx trial cannot keep it open, it only asks for a probe")
    func trialFailureProbes() {
        var b = CircuitBreaker(threshold: 1, cooldown: .seconds(10))
        #expect(b.failed(.certain, key: "a", trial: nil, now: t0) == .opened)
        guard case .trial(let n) = b.admit(now: t0 + .seconds(10)) else { Issue.record("no trial"); return }
        #expect(b.failed(.suspect, key: "poison", trial: n, now: t0 + .seconds(10)) == .probe)
        #expect(b.state == .closed, "waiting for the probe, requests go")
        let opened = b.probeFinished(.healthy, now: t0 + .seconds(10))
        #expect(!opened)
        #expect(b.admit(now: t0 + .seconds(10)) == .proceed)
    }

    @Test("half-open: a connection failure of the trial re-opens; outcomes of other requests are ignored")
    func trialCertainFailureReopens() {
        var b = CircuitBreaker(threshold: 1, cooldown: .seconds(10))
        _ = b.failed(.certain, key: "a", trial: nil, now: t0)
        guard case .trial(let n) = b.admit(now: t0 + .seconds(10)) else { Issue.record("no trial"); return }
        #expect(b.failed(.certain, key: "old", trial: nil, now: t0 + .seconds(10)) == .none, "not the trial")
        b.succeeded(trial: nil)
        #expect(b.state == .halfOpen, "a success of a request sent before the circuit opened is not the trial's")
        #expect(b.failed(.certain, key: "a", trial: n, now: t0 + .seconds(10)) == .opened)
        #expect(b.admit(now: t0 + .seconds(15)) == .refuse)
    }

    @Test("a trial that never reached the upstream is given back")
    func releasedTrial() {
        var b = CircuitBreaker(threshold: 1, cooldown: .seconds(10))
        _ = b.failed(.certain, key: "a", trial: nil, now: t0)
        #expect(b.admit(now: t0 + .seconds(10)) == .trial(1))
        b.released(trial: 1)
        #expect(b.admit(now: t0 + .seconds(10)) == .trial(2))
        b.released(trial: 1)
        #expect(b.admit(now: t0 + .seconds(10)) == .refuse, "a stale release does not free the current trial")
    }
}
