/// `limits`: what one client may hold of a listener (written out in the README's security section).
public struct LimitsConfiguration: Sendable, Equatable {
    /// Connections a listener holds at once; the last twentieth are kept for probes and cache hits.
    public var connections: Int
    /// Connections one client address may hold at once.
    public var connectionsPerClient: Int
    /// A request head must arrive whole within this many seconds of its first byte.
    public var requestHeadTimeoutSeconds: Int
    /// A connection that makes no progress for this many seconds is closed.
    public var idleTimeoutSeconds: Int
    /// Requests one client address may make per second that the cache cannot answer (they go upstream).
    public var upstreamLookupsPerSecond: Int
    /// How many of those a client may save up for a burst.
    public var upstreamLookupBurst: Int

    public init(
        connections: Int = 16_384, connectionsPerClient: Int = 512, requestHeadTimeoutSeconds: Int = 30, idleTimeoutSeconds: Int = 120,
        upstreamLookupsPerSecond: Int = 100, upstreamLookupBurst: Int = 1_000
    ) {
        self.connections = connections
        self.connectionsPerClient = connectionsPerClient
        self.requestHeadTimeoutSeconds = requestHeadTimeoutSeconds
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.upstreamLookupsPerSecond = upstreamLookupsPerSecond
        self.upstreamLookupBurst = upstreamLookupBurst
    }
}

extension ConfigurationDecoder {
    static let limitsKeys = [
        "connections", "connections-per-client", "request-head-timeout", "idle-timeout", "upstream-lookups-per-client", "upstream-lookup-burst",
    ]

    mutating func limits(_ f: Fields, into limits: inout LimitsConfiguration) {
        if let n = self.positive(f, "connections") { limits.connections = n }
        if let n = self.positive(f, "connections-per-client") { limits.connectionsPerClient = n }
        if let s = self.duration(f, "request-head-timeout") { limits.requestHeadTimeoutSeconds = s }
        if let s = self.duration(f, "idle-timeout") { limits.idleTimeoutSeconds = s }
        if let n = self.positive(f, "upstream-lookups-per-client") { limits.upstreamLookupsPerSecond = n }
        if let n = self.positive(f, "upstream-lookup-burst") { limits.upstreamLookupBurst = n }
    }

    private mutating func positive(_ f: Fields, _ key: String) -> Int? {
        self.reader.parsed(f, key, expected: "a whole number of at least 1") { Int($0).flatMap { $0 >= 1 ? $0 : nil } }
    }

    private mutating func duration(_ f: Fields, _ key: String) -> Int? {
        self.reader.parsed(f, key, expected: "a duration of at least 1 s such as 30s, 2m or 120") { DurationString.seconds($0).flatMap { $0 >= 1 ? $0 : nil } }
    }
}
