/// What Wharf last saw of an upstream: reachability, circuit breakers and Docker Hub style rate-limit
/// headers, as shown in `/stats`.
public struct UpstreamHealth: Sendable, Codable {
    /// False once the upstream's host could not be connected to or a breaker opened; true again on
    /// the next answer. A 5xx for one request does not make an upstream unreachable.
    public var reachable: Bool?
    /// Wall-clock seconds when ``reachable`` last changed.
    public var stateSince: UInt64?
    public var lastSuccessAt: UInt64?
    public var lastErrorAt: UInt64?
    public var lastError: String?
    public var rateLimitLimit: String?
    public var rateLimitRemaining: String?
    /// The most severe state among ``circuits``.
    public var circuit: CircuitBreaker.State = .closed
    /// The breaker of each request kind (`manifest`, `blob`, `token`, `other`).
    public var circuits: [String: CircuitBreaker.State]?
    /// `upstream` while a 429 holds every manifest request, `repositories` while it holds some; nil otherwise.
    public var rateLimitHold: String?
}
