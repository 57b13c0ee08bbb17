import Synchronization

/// Remembers upstream "not found" answers for a short time, so repeated requests for a missing
/// tag or manifest do not each cost an upstream round trip (and a Docker Hub pull).
public final class NegativeCache: Sendable {
    private let entries = Mutex<[String: ContinuousClock.Instant]>([:])
    public let ttl: Duration
    static let capacity = 10_000

    public init(ttl: Duration = .seconds(30)) { self.ttl = ttl }

    public func contains(_ key: String, now: ContinuousClock.Instant = .now) -> Bool {
        self.entries.withLock { e in
            guard let until = e[key] else { return false }
            if now < until { return true }
            e[key] = nil
            return false
        }
    }

    public func insert(_ key: String, now: ContinuousClock.Instant = .now) {
        guard self.ttl > .zero else { return }
        self.entries.withLock { e in
            if e.count >= Self.capacity { e = e.filter { now < $0.value } }
            if e.count < Self.capacity { e[key] = now + self.ttl }
        }
    }

    public func remove(_ key: String) { self.entries.withLock { _ = $0.removeValue(forKey: key) } }
}
