import Testing
@testable import WharfUpstream

/// Docker Hub style pull budgets: headers in, modes out, per identity.
@Suite(.tags(.unit)) struct RateLimitBudgetsTests {
    let t0 = ContinuousClock.now

    @Test("headers parse with and without a window; garbage is ignored")
    func parsing() {
        #expect(RateLimitBudgets.parse("100;w=21600")! == (100, 21600))
        #expect(RateLimitBudgets.parse(" 76 ; w=21600 ")! == (76, 21600))
        #expect(RateLimitBudgets.parse("100")! == (100, nil))
        for bad in ["", "-1;w=10", "ten", "100;w=0", "100;w=abc", "99999999999999999999", "100;w=99999999"] {
            #expect(RateLimitBudgets.parse(bad) == nil, "\(bad)")
        }
        var b = RateLimitBudgets()
        b.observe(identity: "mirror", limit: "100;w=21600", remaining: "garbage", now: t0)
        #expect(b.mode(identity: "mirror", now: t0) == .normal)
        #expect(b.snapshot(now: t0).isEmpty)
    }

    @Test("normal above the reserve, reserve at 10 % of the limit, exhausted at 0; each identity on its own")
    func modes() {
        var b = RateLimitBudgets(reservePercent: 10)
        #expect(b.mode(identity: "mirror", now: t0) == .normal, "nothing seen yet")
        b.observe(identity: "mirror", limit: "100;w=21600", remaining: "11;w=21600", now: t0)
        #expect(b.mode(identity: "mirror", now: t0) == .normal)
        b.spend(identity: "mirror", now: t0)
        #expect(b.mode(identity: "mirror", now: t0) == .reserve, "10 left of 100 is the reserve")
        #expect(b.mode(identity: "client:anonymous", now: t0) == .normal)
        b.observe(identity: "mirror", limit: nil, remaining: "0;w=21600", now: t0 + .seconds(1))
        #expect(b.mode(identity: "mirror", now: t0 + .seconds(1)) == .exhausted(retryAfter: .seconds(300)), "a recheck within 5 minutes")
        #expect(b.mode(identity: "mirror", now: t0 + .seconds(301)) == .reserve, "then one GET may learn the budget again")
        let shown = b.snapshot(now: t0 + .seconds(2))
        #expect(shown == [RateLimitBudget(
            identity: "mirror", limit: 100, remaining: 0, windowSeconds: 21600, reserve: 10, state: "exhausted", retryAfterSeconds: 299)])
    }

    @Test("an exhausted budget refills when the oldest GET Wharf sent leaves the window")
    func refillFromOwnSpends() {
        var b = RateLimitBudgets(reservePercent: 0)
        b.observe(identity: "mirror", limit: "2;w=60", remaining: "2;w=60", now: t0)
        b.spend(identity: "mirror", now: t0)
        b.spend(identity: "mirror", now: t0 + .seconds(10))
        b.observe(identity: "mirror", limit: "2;w=60", remaining: "0;w=60", now: t0 + .seconds(11))
        #expect(b.mode(identity: "mirror", now: t0 + .seconds(11)) == .exhausted(retryAfter: .seconds(49)))
        #expect(b.mode(identity: "mirror", now: t0 + .seconds(60)) == .reserve)
        #expect(b.mode(identity: "mirror", now: t0 + .seconds(72)) == .normal, "a whole window without news: nothing is known")
    }

    @Test("identities are bounded, and /stats never shows a whole credential hash")
    func bounded() {
        var b = RateLimitBudgets()
        for i in 0..<(RateLimitBudgets.maxIdentities + 50) {
            b.observe(identity: "client:" + String(repeating: "ab", count: 32) + "\(i)", limit: "100", remaining: "50", now: t0 + .milliseconds(i))
        }
        let shown = b.snapshot(now: t0 + .seconds(2))
        #expect(shown.count == RateLimitBudgets.maxIdentities)
        #expect(shown.allSatisfy { $0.identity.count <= 19 })
    }
}
