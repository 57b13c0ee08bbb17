import OCIDistribution
import Synchronization

/// Token buckets by key (a client address): `rate` tokens a second, at most `burst` saved up.
/// A value with no I/O and an injected clock, so its decisions are tested without sockets.
///
/// Memory is bounded: past ``capacity`` keys, buckets that have filled up again (the same as no
/// bucket) are dropped; if every bucket is still draining, new keys go untracked (allowed) rather
/// than refused, so an attacker with many addresses cannot lock out a new client.
public struct TokenBuckets: Sendable {
    public let rate: Double
    public let burst: Double
    public static let capacity = 65_536
    private var buckets: [String: (tokens: Double, at: ContinuousClock.Instant)] = [:]

    public init(rate: Double, burst: Double) {
        self.rate = max(rate, 0.001)
        self.burst = max(burst, 1)
    }

    public var trackedKeys: Int { self.buckets.count }

    /// Takes one token for `key`: nil if allowed, else how long until the next token.
    public mutating func take(_ key: String, now: ContinuousClock.Instant) -> Duration? {
        var bucket = self.buckets[key] ?? (self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + self.rate * Self.seconds(now - bucket.at))
        bucket.at = now
        guard bucket.tokens >= 1 else {
            self.buckets[key] = bucket
            return .milliseconds(Int64(((1 - bucket.tokens) / self.rate * 1000).rounded(.up)))
        }
        bucket.tokens -= 1
        if self.buckets[key] == nil, self.buckets.count >= Self.capacity {
            self.buckets = self.buckets.filter { self.burst > $0.value.tokens + self.rate * Self.seconds(now - $0.value.at) }
            guard self.buckets.count < Self.capacity else { return nil }
        }
        self.buckets[key] = bucket
        return nil
    }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}

/// Requests that the cache cannot answer and that would go to an upstream (uncached manifests and
/// blobs, blob `HEAD` misses, cross-repository confirmations), limited per client address so one
/// client cannot turn the mirror into an amplifier against the upstream (or spend a Docker Hub
/// rate limit). Cache hits never count. Past the limit: 429 `TOOMANYREQUESTS` with `Retry-After`.
public final class UpstreamLookupLimiter: Sendable {
    private let buckets: Mutex<TokenBuckets>

    /// Defaults: 100 look-ups a second per client address, bursts of 1,000 (a CI fleet behind one
    /// NAT address pulling cold images).
    public init(perSecond: Double = 100, burst: Double = 1_000) {
        self.buckets = Mutex(TokenBuckets(rate: perSecond, burst: burst))
    }

    /// Replaces the rate (from the configuration); buckets start full again.
    public func configure(perSecond: Double, burst: Double) {
        self.buckets.withLock { $0 = TokenBuckets(rate: perSecond, burst: burst) }
    }

    /// Charges one look-up to `client`; throws 429 when its budget is spent.
    public func charge(_ client: String, now: ContinuousClock.Instant = .now) throws(RegistryError) {
        guard let wait = self.buckets.withLock({ $0.take(client, now: now) }) else { return }
        let seconds = max(1, Int(wait.components.seconds) + (wait.components.attoseconds > 0 ? 1 : 0))
        throw RegistryError(
            .tooManyRequests, "too many requests this mirror must forward upstream; retry later", headers: [("Retry-After", "\(seconds)")])
    }
}
