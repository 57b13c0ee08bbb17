import AsyncHTTPClient
import NIOHTTP1

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
    /// The upstream did answer, but not in HTTP a client could trust (see ``isMalformedAnswer(_:)``):
    /// a bad gateway rather than one that is down.
    public let malformed: Bool

    public init(description: String, malformed: Bool = false) {
        self.description = description
        self.malformed = malformed
    }

    /// Whether `error` says the upstream's bytes broke HTTP/1.1 — a parser error (bad status line,
    /// chunk size, header block), conflicting or missing framing — rather than that the network failed.
    public static func isMalformedAnswer(_ error: any Error) -> Bool {
        if let e = error as? UpstreamUnreachable { return e.malformed }
        if error is HTTPParserError { return true }
        guard let e = error as? HTTPClientError else { return false }
        return [
            .identityCodingIncorrectlyPresent, .chunkedSpecifiedMultipleTimes, .bodyLengthMismatch, .incompatibleHeaders,
            .httpEndReceivedAfterHeadWith1xx, .contentLengthMissing,
        ].contains(e)
    }
}

/// The upstream redirected somewhere Wharf does not go (see ``RedirectPolicy``).
public struct UpstreamRedirectRefused: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "upstream redirect refused: \(self.reason)" }
}
