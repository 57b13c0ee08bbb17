/// The upstream answered 429 recently; manifest requests of that repository (or of the whole
/// upstream) wait until the hold has passed.
public struct UpstreamBackoff: Error, CustomStringConvertible {
    public let retryAfter: Duration
    public var description: String { "upstream rate limit: retry after \(self.retryAfter.components.seconds) s" }
}

/// The circuit breaker is open: the upstream failed repeatedly and is not asked until the cooldown ends.
public struct UpstreamCircuitOpen: Error, CustomStringConvertible {
    public let upstream: String
    public var description: String { "upstream \(self.upstream) is unavailable (circuit open)" }
}

/// The upstream's token endpoint refused the credentials (401/403).
public struct UpstreamCredentialsRejected: Error, CustomStringConvertible {
    public let description = "the upstream token endpoint rejected the credentials"
}

/// The upstream could not be reached or misbehaved at the transport level.
public struct UpstreamUnreachable: Error, CustomStringConvertible {
    public let description: String
}

/// The upstream redirected somewhere Wharf does not go (see ``RedirectPolicy``).
public struct UpstreamRedirectRefused: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "upstream redirect refused: \(self.reason)" }
}
