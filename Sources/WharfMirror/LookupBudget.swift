import OCIDistribution
import RateLimiting
import Synchronization

/// Look-ups per key at `rate` a second with bursts of `burst`, as a value: ``KeyedRateLimiter``
/// (the project's one rate-limiting mechanism) seen as "take one, or say how long to wait".
/// Memory is bounded by ``capacity`` keys.
public struct TokenBuckets: Sendable {
    public static let capacity = 65_536
    private var limiter: KeyedRateLimiter

    public init(rate: Double, burst: Double) {
        let burst = max(Int(burst), 1)
        let window = Duration.milliseconds(Int64((Double(burst) / max(rate, 0.001) * 1000).rounded()))
        self.limiter = KeyedRateLimiter(rate: KeyedRate(failures: burst, per: window), capacity: Self.capacity)
    }

    public var trackedKeys: Int { self.limiter.count }

    /// Takes one token for `key`: nil if allowed, else how long until the next token.
    public mutating func take(_ key: String, now: ContinuousClock.Instant) -> Duration? {
        if let wait = self.limiter.wait(for: key, now: now) { return wait }
        self.limiter.charge(key, now: now)
        return nil
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
