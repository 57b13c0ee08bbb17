import OCIDistribution

/// When a request may go on from an upstream to its fallbacks, and which fallback answers count: the
/// decisions of an ``UpstreamChain``, with no I/O, so they are unit-tested without sockets.
///
/// - The primary's answer below 500 other than 429 is final, whatever it says: a 404 or a 401 is the
///   upstream speaking about the content, never a reason to ask elsewhere.
/// - Content addressed by digest (blobs, manifests by digest) may come from any source: the bytes are
///   verified against the digest before they are stored or completed. It goes on to the next source
///   when the primary is unreachable, answers 5xx or 429, or is held back by Wharf (a 429 hold, a
///   spent pull budget).
/// - A tag (a mutable name) may be resolved by a fallback only while the primary is *unreachable*
///   (connection refused or failed, timed out, circuit open): a primary that answers 5xx or 429 is
///   up, and its tags are not taken from a mirror that may lag behind it.
/// - A fallback's answer counts only if it is a success (2xx). Anything else from a fallback — a 404
///   from a partial mirror included — moves on to the next one; when none answers, the request ends
///   with the primary's own result (its error, or its 5xx/429 answer), exactly as without fallbacks.
/// - Requests made with a pass-through client's credentials never leave the primary: those
///   credentials belong to the primary's host, and so does the decision that the client may pull.
public enum FailoverPolicy {
    /// How the request names its content.
    public enum Addressing: Sendable, Equatable {
        /// A tag: mutable, only the primary is authoritative.
        case byTag
        /// A digest: immutable and verified, any source will do.
        case byDigest

        /// The addressing of `/v2/<repo>/<path>`: blobs and `manifests/<digest>` by digest, other manifests by tag.
        public init(path: String) {
            if path.hasPrefix("blobs/") {
                self = .byDigest
            } else if path.hasPrefix("manifests/"), (try? Digest(parsing: String(path.dropFirst("manifests/".count)))) != nil {
                self = .byDigest
            } else {
                self = .byTag
            }
        }
    }

    /// How one source's attempt ended.
    public enum Outcome: Sendable, Equatable {
        /// An answer with this status.
        case answered(status: Int)
        /// No answer: the connection was refused or failed, the answer did not begin in time, the
        /// transport broke, or the circuit is open.
        case unreachable(String)
        /// Wharf itself held the request back: a 429 hold, or a spent pull budget.
        case heldBack(String)
        /// Nothing about the upstream's availability: the token endpoint rejected the credentials, or
        /// a redirect went where Wharf does not follow.
        case notAboutAvailability(String)
        /// The request was cancelled (its caller went away, or shutdown).
        case cancelled

        /// The outcome of an error thrown by ``UpstreamClient/send(_:repository:path:query:headers:as:)``.
        public init(error: any Error) {
            switch error {
            case is CancellationError:
                self = .cancelled
            case is UpstreamCredentialsRejected, is UpstreamRedirectRefused:
                self = .notAboutAvailability(String(describing: error))
            case is UpstreamBackoff:
                self = .heldBack(String(describing: error))
            default:
                // UpstreamUnreachable, UpstreamCircuitOpen, and whatever a broken token endpoint throws.
                self = .unreachable(String(describing: error))
            }
        }

        /// Why the primary did not serve, for logs.
        public var cause: String {
            switch self {
            case .answered(let status): "HTTP \(status)"
            case .unreachable(let why), .heldBack(let why), .notAboutAvailability(let why): why
            case .cancelled: "cancelled"
            }
        }
    }

    /// What to do after an attempt.
    public enum Step: Sendable, Equatable {
        /// Use this answer (or, for the primary's error, end with it).
        case accept
        /// Ask the next source.
        case next
        /// Ask no more sources: end with the primary's result.
        case stop
    }

    /// After the primary's attempt: keep its result, or go on to the fallbacks.
    public static func afterPrimary(_ outcome: Outcome, addressing: Addressing, identity: UpstreamIdentity) -> Step {
        if case .answered(let status) = outcome, status < 500, status != 429 { return .accept }
        guard identity == .mirror else { return .stop }
        switch (outcome, addressing) {
        case (.notAboutAvailability, _), (.cancelled, _): return .stop
        case (.unreachable, _): return .next
        case (.answered, .byDigest), (.heldBack, .byDigest): return .next
        case (.answered, .byTag), (.heldBack, .byTag): return .stop
        }
    }

    /// After a fallback's attempt: a success is used; anything else moves on (a cancelled request stops).
    public static func afterFallback(_ outcome: Outcome) -> Step {
        switch outcome {
        case .answered(let status) where (200..<300).contains(status): return .accept
        case .cancelled: return .stop
        default: return .next
        }
    }
}
