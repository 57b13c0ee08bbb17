import Logging
import Synchronization

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
    /// The upstream and repository the request was routed to, once routed.
    public var upstream: String?
    public var repository: String?
    public var cache: Cache
    /// The error code of a refused request (`BLOB_UNKNOWN`, …), logged in place of the cache outcome.
    public var errorCode: String?
    public var status: Int
    /// Body bytes written.
    public var bytes: Int64
    /// The response was cut short (the connection closed before it was complete).
    public var aborted: Bool
    /// A manifest request the client will pull (a GET, not a HEAD): counted as a pull of its repository.
    public var isPull: Bool
    public var duration: Duration

    public init(
        kind: MirrorStats.RequestKind, method: String, path: String, upstream: String? = nil, repository: String? = nil,
        cache: Cache = .none, errorCode: String? = nil, status: Int, bytes: Int64 = 0, aborted: Bool = false, isPull: Bool = false,
        duration: Duration
    ) {
        self.kind = kind
        self.method = method
        self.path = path
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
public struct OutcomeRecorder: Sendable {
    let stats: MirrorStats
    let logger: Logger
    let logsRequests: Bool
    private static let requestCounter = Atomic<UInt64>(0)

    public init(stats: MirrorStats, logger: Logger) {
        self.stats = stats
        self.logger = logger
        self.logsRequests = logger.logLevel <= .info
    }

    public func record(_ o: RequestOutcome) {
        let s = self.stats
        s.request(o.kind, duration: o.duration)
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
            "id": "\(Self.requestCounter.add(1, ordering: .relaxed).newValue)", "method": "\(o.method)", "path": "\(o.path.prefix(512))",
            "kind": "\(o.kind.rawValue)", "status": "\(o.status)", "bytes": "\(o.bytes)", "us": "\(Int(o.duration / .microseconds(1)))",
            "cache": "\(o.logOutcome)", "aborted": "\(o.aborted)",
        ])
    }
}
