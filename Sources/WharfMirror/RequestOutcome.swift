import Logging
import Synchronization
import WharfLogging

/// What became of one request, recorded once when it ends, by both request paths (the event-loop
/// hit path and the async side). `/stats`, `/metrics` and the access log are all fed from this one
/// record, so they agree by construction.
public struct RequestOutcome: Sendable {
    /// How the cache answered.
    public enum Cache: String, Sendable {
        /// From the cache (a blob file, a manifest, a tag within its TTL).
        case hit
        /// From the upstream: a fill followed, a manifest fetched, a HEAD asked upstream.
        case miss
        /// A cached tag past its TTL, served because the upstream failed.
        case stale
        /// Streamed from the upstream uncached (the cache could not keep it).
        case relay
        /// A range of an uncached blob, from a ranged upstream GET beside its fill.
        case ranged
        /// An edge's signed redirect to a cache.
        case redirect
        /// Answered from the not-found cache.
        case negative
        /// Tags or referrers passed through from the upstream.
        case upstream
        /// A status page, the base endpoint, or a refusal.
        case none = "-"
    }

    public var kind: MirrorStats.RequestKind
    public var method: String
    public var path: String
    /// The client's address (no port), and its `User-Agent` as sent (bounded when logged).
    public var client: String
    public var userAgent: String?
    /// The upstream and repository the request was routed to, once routed.
    public var upstream: String?
    public var repository: String?
    public var cache: Cache
    /// The error code of a refused request (`BLOB_UNKNOWN`, …), logged in place of the cache outcome.
    public var errorCode: String?
    public var status: Int
    /// Body bytes written (for an aborted response, those known to have been handed to the connection).
    public var bytes: Int64
    /// The response was cut short: the connection closed or failed before all of it was written.
    public var aborted: Bool
    /// A manifest request the client will pull (a GET, not a HEAD): counted as a pull of its repository.
    public var isPull: Bool
    public var duration: Duration

    public init(
        kind: MirrorStats.RequestKind, method: String, path: String, client: String = "-", userAgent: String? = nil, upstream: String? = nil,
        repository: String? = nil,
        cache: Cache = .none, errorCode: String? = nil, status: Int, bytes: Int64 = 0, aborted: Bool = false, isPull: Bool = false,
        duration: Duration
    ) {
        self.kind = kind
        self.method = method
        self.path = path
        self.client = client
        self.userAgent = userAgent
        self.upstream = upstream
        self.repository = repository
        self.cache = cache
        self.errorCode = errorCode
        self.status = status
        self.bytes = bytes
        self.aborted = aborted
        self.isPull = isPull
        self.duration = duration
    }

    /// The access log's `cache` field.
    public var logOutcome: String { self.errorCode ?? self.cache.rawValue }
}

/// Turns outcomes into counters and access-log lines.
///
/// The access log is one `request` line (at `info`) per request: `id`, `client`, `method`, `path`,
/// `status`, `bytes`, `duration_ms`, `cache` (the outcome, or the error code of a refusal), `kind`
/// (the route), `upstream`, `aborted` and `user_agent`. Client-sent text is bounded here (path 512,
/// user agent 256 characters) and escaped by the log handler.
public struct OutcomeRecorder: Sendable {
    let stats: MirrorStats
    let logger: Logger
    /// Whether access-log lines are written (the logger's level is `info` or lower): when not, the
    /// hit path does not even read the user agent.
    public let logsRequests: Bool
    static let maxLoggedPath = 512
    static let maxLoggedUserAgent = 256
    private static let requestCounter = Atomic<UInt64>(0)

    public init(stats: MirrorStats, logger: Logger) {
        self.stats = stats
        self.logger = logger
        self.logsRequests = logger.logLevel <= .info
    }

    public func record(_ o: RequestOutcome) {
        let s = self.stats
        s.request(o.kind, status: o.status, duration: o.duration)
        switch (o.kind, o.cache) {
        case (.blob, .hit):
            s.blobHits.add()
            s.bytesFromDisk.add(Int(o.bytes))
        case (.blob, .miss):
            s.blobMisses.add()
            s.bytesFromFills.add(Int(o.bytes))
        case (.blob, .ranged):
            s.blobMisses.add()
            s.bytesFromRanges.add(Int(o.bytes))
        case (.manifest, .hit), (.manifest, .stale):
            s.manifestHits.add()
        case (.manifest, .miss):
            s.manifestMisses.add()
        default:
            break
        }
        if let repository = o.repository, o.bytes > 0 || o.isPull {
            s.repository(repository, bytes: o.kind == .blob ? Int(o.bytes) : 0, pull: o.isPull)
        }
        guard self.logsRequests else { return }
        self.logger.info("request", metadata: [
            "id": LogValue.integer(Self.requestCounter.add(1, ordering: .relaxed).newValue), "client": .string(o.client),
            "method": .string(o.method), "path": LogValue.clientText(o.path, limit: Self.maxLoggedPath), "kind": .string(o.kind.rawValue),
            "status": LogValue.integer(o.status), "bytes": LogValue.integer(o.bytes), "duration_ms": LogValue.milliseconds(o.duration),
            "cache": .string(o.logOutcome), "upstream": .string(o.upstream ?? "-"), "aborted": LogValue.bool(o.aborted),
            "user_agent": o.userAgent.map { LogValue.clientText($0, limit: Self.maxLoggedUserAgent) } ?? "-",
        ])
    }
}
