import WharfClock

/// Bearer tokens per (realm, service, scope, identity), refreshed before they expire, with one fetch
/// in flight per key however many requests want the token.
actor TokenCache {
    struct Key: Hashable, Sendable {
        let realm: String
        let service: String
        let scope: String
        let identity: String
    }

    struct Entry: Sendable {
        let token: String
        let refreshAt: ContinuousClock.Instant
    }

    private let clock: WharfClock
    private var entries: [Key: Entry] = [:]
    private var inflight: [Key: Task<Entry, any Error>] = [:]

    init(clock: WharfClock) {
        self.clock = clock
    }

    /// A valid token for `key`: the cached one unless it is due for refresh or `invalidate` is set.
    func token(for key: Key, invalidate: Bool, fetch: @escaping @Sendable () async throws -> Entry) async throws -> String {
        if invalidate { self.entries[key] = nil }
        if let e = self.entries[key], self.clock.now() < e.refreshAt { return e.token }
        if let task = self.inflight[key] { return try await task.value.token }
        let task = Task { try await fetch() }
        self.inflight[key] = task
        defer { self.inflight[key] = nil }
        let entry = try await task.value
        self.entries[key] = entry
        if self.entries.count > 10_000 { self.entries = self.entries.filter { self.clock.now() < $0.value.refreshAt } }
        return entry.token
    }
}
