import Synchronization

/// Which upstreams answered the referrers API with 404 (Distribution 2.8, Docker Hub): they have
/// none, so their referrers come from the tag schema without asking the API again for one tag TTL.
/// One entry per configured upstream at most.
final class ReferrersAPIMemory: Sendable {
    /// What is known about an upstream's referrers API.
    enum Knowledge: Equatable {
        /// Never seen a 404, or the API answered since.
        case unknown
        /// It answered 404 at most one tag TTL ago.
        case lacking
        /// It answered 404 longer ago: ask again, but the tag schema is still the fallback.
        case lackingExpired
    }

    /// Upstream name → wall-clock second of its last 404.
    private let lacking = Mutex<[String: UInt64]>([:])

    func knowledge(of upstream: String, now: UInt64, ttlSeconds: Int64) -> Knowledge {
        guard let seen = self.lacking.withLock({ $0[upstream] }) else { return .unknown }
        return now < seen + UInt64(max(0, ttlSeconds)) ? .lacking : .lackingExpired
    }

    func noteLacking(_ upstream: String, now: UInt64) { self.lacking.withLock { $0[upstream] = now } }

    func noteAnswered(_ upstream: String) { self.lacking.withLock { _ = $0.removeValue(forKey: upstream) } }
}
