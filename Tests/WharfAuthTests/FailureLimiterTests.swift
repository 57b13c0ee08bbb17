import RateLimiting
import Testing
import WharfAuth

/// ``KeyedRateLimiter`` and ``LoginThrottle`` as values: events in, decisions out, a clock that only moves when told.
@Suite(.tags(.unit)) struct FailureLimiterTests {
    let t0 = ContinuousClock.now

    @Test("ten checks fit a fresh key, the eleventh waits one interval, and the budget refills over the window")
    func burstThenRefill() {
        var limiter = KeyedRateLimiter(rate: KeyedRate(failures: 10, per: .seconds(60)))
        for _ in 0..<10 {
            #expect(limiter.wait(for: "k", now: self.t0) == nil)
            limiter.charge("k", now: self.t0)
        }
        #expect(limiter.wait(for: "k", now: self.t0) == .seconds(6))
        #expect(limiter.wait(for: "other", now: self.t0) == nil, "keys are independent")
        #expect(limiter.wait(for: "k", now: self.t0 + .seconds(5)) == .seconds(1))
        #expect(limiter.wait(for: "k", now: self.t0 + .seconds(6)) == nil)
        #expect(!limiter.isClean("k", now: self.t0 + .seconds(59)))
        #expect(limiter.isClean("k", now: self.t0 + .seconds(60)))
    }

    @Test("a refund gives one check back; refunding an empty key is harmless")
    func refunds() {
        var limiter = KeyedRateLimiter(rate: KeyedRate(failures: 2, per: .seconds(10)))
        limiter.charge("k", now: self.t0)
        limiter.charge("k", now: self.t0)
        #expect(limiter.wait(for: "k", now: self.t0) != nil)
        limiter.refund("k", now: self.t0)
        #expect(limiter.wait(for: "k", now: self.t0) == nil)
        limiter.refund("k", now: self.t0)
        #expect(limiter.isClean("k", now: self.t0) && limiter.count == 0)
        limiter.refund("never-seen", now: self.t0)
        #expect(limiter.count == 0)
    }

    @Test("the table stays within its capacity: full budgets go first, then the ones closest to full")
    func boundedTable() {
        var limiter = KeyedRateLimiter(rate: KeyedRate(failures: 1, per: .seconds(10)), capacity: 100)
        for i in 0..<100 { limiter.charge("old-\(i)", now: self.t0) }
        #expect(limiter.count == 100)
        // Ten seconds on, every old budget is full again: all of them make room.
        limiter.charge("new", now: self.t0 + .seconds(10))
        #expect(limiter.count == 1)
        // A table of live entries sheds a quarter, the ones charged earliest.
        for i in 0..<99 { limiter.charge("live-\(i)", now: self.t0 + .seconds(11) + .milliseconds(i)) }
        #expect(limiter.count == 100)
        limiter.charge("latest", now: self.t0 + .seconds(12))
        #expect(limiter.count <= 100)
        #expect(limiter.wait(for: "latest", now: self.t0 + .seconds(12)) != nil)
        #expect(limiter.wait(for: "live-98", now: self.t0 + .seconds(12)) != nil, "recent entries are kept")
        for i in 0..<10_000 { limiter.charge("flood-\(i)", now: self.t0 + .seconds(13)) }
        #expect(limiter.count <= 100)
    }

    @Test("login throttle: per address and per user; a refused attempt charges nothing; success refunds")
    func throttle() {
        var throttle = LoginThrottle(perAddress: KeyedRate(failures: 3, per: .seconds(30)), perUser: KeyedRate(failures: 5, per: .seconds(30)))
        #expect(throttle.admit(address: "10.0.0.1", user: "dave", now: self.t0) == .check(clean: true))
        #expect(throttle.admit(address: "10.0.0.1", user: "erin", now: self.t0) == .check(clean: false), "the address failed recently")
        #expect(throttle.admit(address: "10.0.0.1", user: "frank", now: self.t0) == .check(clean: false))
        #expect(throttle.admit(address: "10.0.0.1", user: "gina", now: self.t0) == .refuse(retryAfter: .seconds(10)))
        // Another address may still try, and a clean one goes to the fresh lane.
        #expect(throttle.admit(address: "10.0.0.2", user: "carol", now: self.t0) == .check(clean: true))
        throttle.refund(address: "10.0.0.2", user: "carol", now: self.t0)
        #expect(throttle.admit(address: "10.0.0.2", user: "carol", now: self.t0) == .check(clean: true), "a success leaves no trace")
        // Five failures for dave from five addresses: the user is limited wherever the next one comes from.
        for i in 3..<7 { #expect(throttle.admit(address: "10.0.0.\(i)", user: "dave", now: self.t0) == .check(clean: false)) }
        if case .refuse(let wait) = throttle.admit(address: "10.0.0.9", user: "dave", now: self.t0) {
            #expect(wait == .seconds(6))
        } else {
            Issue.record("dave should be limited")
        }
        #expect(throttle.admit(address: "10.0.0.9", user: "henry", now: self.t0) == .check(clean: true), "the refusal charged nothing")
    }

    @Test("addresses: IPv4 as is, IPv6 by /64, IPv4-mapped IPv6 as IPv4")
    func addressKeys() {
        #expect(LoginThrottle.addressKey("192.0.2.7") == "192.0.2.7")
        #expect(LoginThrottle.addressKey("2001:db8:1:2:aaaa::1") == LoginThrottle.addressKey("2001:db8:1:2:bbbb:cccc:dddd:eeee"))
        #expect(LoginThrottle.addressKey("2001:db8:1:2::1") == "2001:db8:1:2::/64")
        #expect(LoginThrottle.addressKey("2001:db8:1:3::1") != LoginThrottle.addressKey("2001:db8:1:2::1"))
        #expect(LoginThrottle.addressKey("::ffff:192.0.2.7") == "192.0.2.7")
        #expect(LoginThrottle.addressKey("unknown") == "unknown")
    }
}
