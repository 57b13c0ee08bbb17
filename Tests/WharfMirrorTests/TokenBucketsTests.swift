import OCIDistribution
import Testing
import WharfMirror

/// The per-client look-up budget, driven by an injected clock (issue #12: 2,000 `HEAD`s of random
/// digests from one client made 1,987 upstream requests).
@Suite(.tags(.unit)) struct TokenBucketsTests {
    static let t0 = ContinuousClock.now

    @Test func burstThenRate() {
        var buckets = TokenBuckets(rate: 10, burst: 20)
        for i in 0..<20 { #expect(buckets.take("a", now: Self.t0) == nil, "token \(i)") }
        let wait = buckets.take("a", now: Self.t0)
        #expect(wait != nil && wait! <= .milliseconds(100) && wait! > .zero)
        #expect(buckets.take("b", now: Self.t0) == nil, "another client has its own bucket")
        #expect(buckets.take("a", now: Self.t0 + .milliseconds(100)) == nil, "one token back after 1/rate s")
        #expect(buckets.take("a", now: Self.t0 + .milliseconds(100)) != nil)
        // Refills up to the burst, not past it.
        for _ in 0..<20 { #expect(buckets.take("a", now: Self.t0 + .seconds(60)) == nil) }
        #expect(buckets.take("a", now: Self.t0 + .seconds(60)) != nil)
    }

    @Test func memoryStaysBounded() {
        var buckets = TokenBuckets(rate: 1, burst: 2)
        for i in 0..<(TokenBuckets.capacity + 10) { _ = buckets.take("client-\(i)", now: Self.t0) }
        #expect(buckets.trackedKeys <= TokenBuckets.capacity)
        // Once the old buckets have refilled, they make room for new clients.
        #expect(buckets.take("late", now: Self.t0 + .seconds(5)) == nil)
        #expect(buckets.trackedKeys <= TokenBuckets.capacity)
        #expect(buckets.take("late", now: Self.t0 + .seconds(5)) == nil)
        #expect(buckets.take("late", now: Self.t0 + .seconds(5)) != nil, "the new client is tracked after the sweep")
    }

    @Test func limiterAnswers429WithRetryAfter() {
        let limiter = UpstreamLookupLimiter(perSecond: 0.5, burst: 1)
        #expect(throws: Never.self) { try limiter.charge("x", now: Self.t0) }
        #expect {
            try limiter.charge("x", now: Self.t0)
        } throws: { error in
            guard let e = error as? RegistryError else { return false }
            return e.status == 429 && e.headers.contains { $0.0 == "Retry-After" && $0.1 == "2" }
        }
    }
}
