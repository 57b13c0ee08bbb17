import Testing
@testable import WharfUpstream

/// 429 holds: scoped to what the upstream said, capped.
@Suite(.tags(.unit)) struct RateLimitHoldsTests {
    let t0 = ContinuousClock.now

    @Test("a 429 on one repository holds only that repository")
    func repositoryScope() {
        var h = RateLimitHolds(maxHold: .seconds(300))
        #expect(h.hold(repository: "a", retryAfter: .seconds(30), quotaExhausted: false, now: t0) == .repository("a"))
        #expect(h.remaining(repository: "a", now: t0 + .seconds(1)) == .seconds(29))
        #expect(h.remaining(repository: "b", now: t0 + .seconds(1)) == nil)
        #expect(h.remaining(repository: "a", now: t0 + .seconds(30)) == nil)
    }

    @Test("Retry-After: 3600 is capped at the maximum hold")
    func capped() {
        var h = RateLimitHolds(maxHold: .seconds(300))
        _ = h.hold(repository: "a", retryAfter: .seconds(3600), quotaExhausted: false, now: t0)
        #expect(h.remaining(repository: "a", now: t0) == .seconds(300))
        #expect(h.remaining(repository: "a", now: t0 + .seconds(300)) == nil)
    }

    @Test("two repositories rate limited at once, or RateLimit-Remaining: 0, or no repository hold the whole upstream")
    func upstreamScope() {
        var h = RateLimitHolds(maxHold: .seconds(300))
        _ = h.hold(repository: "a", retryAfter: .seconds(30), quotaExhausted: false, now: t0)
        #expect(h.hold(repository: "b", retryAfter: .seconds(20), quotaExhausted: false, now: t0 + .seconds(1)) == .upstream)
        #expect(h.remaining(repository: "c", now: t0 + .seconds(2)) == .seconds(19))
        #expect(h.remaining(repository: "a", now: t0 + .seconds(2)) == .seconds(28))

        var q = RateLimitHolds(maxHold: .seconds(300))
        #expect(q.hold(repository: "a", retryAfter: .seconds(60), quotaExhausted: true, now: t0) == .upstream)
        #expect(q.remaining(repository: "z", now: t0) == .seconds(60))

        var n = RateLimitHolds(maxHold: .seconds(300))
        #expect(n.hold(repository: nil, retryAfter: .seconds(5), quotaExhausted: false, now: t0) == .upstream)
        #expect(n.remaining(repository: "z", now: t0) == .seconds(5))
    }

    @Test("an expired hold on one repository does not make a later one upstream-wide")
    func expiredDoesNotEscalate() {
        var h = RateLimitHolds(maxHold: .seconds(300))
        _ = h.hold(repository: "a", retryAfter: .seconds(10), quotaExhausted: false, now: t0)
        #expect(h.hold(repository: "b", retryAfter: .seconds(10), quotaExhausted: false, now: t0 + .seconds(11)) == .repository("b"))
        #expect(h.remaining(repository: "a", now: t0 + .seconds(11)) == nil)
    }
}
