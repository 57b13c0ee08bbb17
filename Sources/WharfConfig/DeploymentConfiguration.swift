/// The edge/cache split (`edge`): an edge answers blob GETs with a signed `307` to a cache; a cache
/// serves blobs only on a valid signature. Off unless `redirectBlobsTo` or `requireSignedBlobs` is set.
public struct EdgeConfiguration: Sendable, Equatable {
    /// Edge mode: base URL of the cache that blob GETs are redirected to (`redirect-blobs-to`).
    public var redirectBlobsTo: String?
    /// Cache mode: serve blobs only through signed URLs (`require-signed-blobs`).
    public var requireSignedBlobs: Bool
    /// File with the secret shared by edge and caches (`secret-file`); required when either mode is on.
    public var secretFile: String?
    /// Seconds a signed URL stays valid (`ttl`), 1 s to 24 h.
    public var ttlSeconds: Int

    public init(redirectBlobsTo: String? = nil, requireSignedBlobs: Bool = false, secretFile: String? = nil, ttlSeconds: Int = 60) {
        self.redirectBlobsTo = redirectBlobsTo
        self.requireSignedBlobs = requireSignedBlobs
        self.secretFile = secretFile
        self.ttlSeconds = ttlSeconds
    }

    /// Whether this Wharf is an edge, a cache, or both.
    public var isEnabled: Bool { self.redirectBlobsTo != nil || self.requireSignedBlobs }

    /// Longest accepted `ttl`: 24 hours.
    public static let maxTTLSeconds = 86_400
}

/// One receiver of event notifications (`webhooks[]`).
public struct WebhookConfiguration: Sendable, Equatable {
    /// `http(s)://…` URL that receives a JSON `POST` per event.
    public var url: String
    /// File with the secret that signs the bodies (`X-Wharf-Signature`); `nil` sends them unsigned.
    public var secretFile: String?
    /// The events sent to this receiver; `nil` sends all of ``eventNames``.
    public var events: [String]?

    public init(url: String, secretFile: String? = nil, events: [String]? = nil) {
        self.url = url
        self.secretFile = secretFile
        self.events = events
    }

    /// Every event Wharf emits.
    public static let eventNames = ["blob.filled", "tag.pulled", "cache.evicted", "upstream.down", "upstream.up"]
}

/// Images `wharf serve` keeps warm (`warm`): fetched into the cache shortly after start, then again
/// at every interval.
public struct WarmConfiguration: Sendable, Equatable {
    /// Seconds between the starts of two runs (`every`), at least 1.
    public var everySeconds: Int
    /// `OS/ARCH[/VARIANT]` of multi-platform images to fetch; empty fetches all.
    public var platforms: [String]
    /// Average bandwidth cap in bytes per second (`max-rate`); `nil` for none.
    public var maxRate: Int64?
    /// `REPO[:TAG]` or `REPO@sha256:HEX`, named as the mirror's clients name them.
    public var images: [String]

    public init(everySeconds: Int = 21_600, platforms: [String] = [], maxRate: Int64? = nil, images: [String] = []) {
        self.everySeconds = everySeconds
        self.platforms = platforms
        self.maxRate = maxRate
        self.images = images
    }
}
