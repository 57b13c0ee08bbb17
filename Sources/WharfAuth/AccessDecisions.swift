import NIOCore
import NIOHTTP1
import Synchronization
import WharfClock
import WharfUpstream

/// Remembers, per client identity and repository, whether the upstream grants pull — briefly.
///
/// The question is asked with the client's own token (`GET /v2/<repo>/tags/list?n=1`, which needs
/// pull scope and is not counted as a pull by Docker Hub). A grant is trusted for `grantTTL`, a
/// denial for `denialTTL`. When the upstream cannot be asked and no decision is current, the answer
/// is ``Decision/unknown`` and the caller refuses: access fails closed.
public final class AccessDecisions: Sendable {
    public enum Decision: Sendable, Equatable {
        case granted, denied
        /// The upstream's token endpoint refused the client's username/password.
        case badCredentials
        /// The upstream could not be asked.
        case unknown
    }

    private struct Key: Hashable { let identity: String; let upstream: String; let repository: String }
    private let cache = Mutex<[Key: (Decision, ContinuousClock.Instant)]>([:])
    private let grantTTL: Duration
    private let denialTTL: Duration
    private let clock: WharfClock

    public init(grantTTL: Duration = .seconds(60), denialTTL: Duration = .seconds(10), clock: WharfClock = .system) {
        self.clock = clock
        self.grantTTL = grantTTL
        self.denialTTL = denialTTL
    }

    public func decide(identity: UpstreamIdentity, upstream: UpstreamClient, repository: String) async -> Decision {
        let key = Key(identity: identity.cacheKey, upstream: upstream.configuration.name, repository: repository)
        let now = self.clock.now()
        if let (decision, until) = self.cache.withLock({ $0[key] }), now < until { return decision }
        let decision: Decision
        do {
            let response = try await upstream.send(.GET, repository: repository, path: "tags/list", query: "n=1", as: identity)
            _ = try? await response.collect(upTo: 1 << 20)
            switch response.status {
            case 200: decision = .granted
            case 401, 403, 404: decision = .denied
            default: decision = .unknown
            }
        } catch is UpstreamCredentialsRejected {
            decision = .badCredentials
        } catch {
            decision = .unknown
        }
        guard decision != .unknown else { return .unknown }
        let ttl = decision == .granted ? self.grantTTL : self.denialTTL  // bad credentials: like a denial
        self.cache.withLock { c in
            if c.count > 100_000 { c.removeAll() }
            c[key] = (decision, self.clock.now() + ttl)
        }
        return decision
    }
}
