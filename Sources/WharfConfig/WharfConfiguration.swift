/// Everything the configuration file can set, with the built-in defaults.
///
/// Produced by ``ConfigurationLoader``; command-line flags and environment variables are merged on
/// top of it by the caller, which then runs ``ConfigurationLoader/validate(_:)`` again.
public struct WharfConfiguration: Sendable, Equatable {
    /// Addresses the registry API listens on (`listen`).
    public var listeners: [ListenerConfiguration]
    /// Cache folder and size bound (`data`).
    public var data: DataConfiguration
    /// How clients of the mirror authenticate (`client-auth`).
    public var clientAuth: ClientAuthConfiguration
    /// Connections, per-client connections and request timing (`limits`).
    public var limits: LimitsConfiguration
    /// swift-log level name (`log-level`).
    public var logLevel: String
    /// How log lines are written, `text` (logfmt) or `json` (`log-format`).
    public var logFormat: String
    /// Registries the mirror pulls from (`upstreams`).
    public var upstreams: [UpstreamEntry]
    /// Edge or cache role in the edge/cache split (`edge`); off by default.
    public var edge: EdgeConfiguration
    /// Receivers of event notifications (`webhooks`); none by default.
    public var webhooks: [WebhookConfiguration]
    /// Images kept warm by `wharf serve` (`warm`); `nil` for none.
    public var warm: WarmConfiguration?
    /// The admin API (`admin`); `nil`: off.
    public var admin: AdminConfiguration?

    /// Log levels accepted by `log-level`, least to most severe.
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Formats accepted by `log-format`.
    public static let logFormats = ["text", "json"]

    /// All defaults: one plain listener on `0.0.0.0:5000`, `./data`, open access, Docker Hub.
    public init() {
        self.listeners = [ListenerConfiguration(host: "0.0.0.0", port: 5000, tls: nil)]
        self.data = DataConfiguration()
        self.clientAuth = ClientAuthConfiguration()
        self.limits = LimitsConfiguration()
        self.logLevel = "info"
        self.logFormat = "text"
        self.upstreams = [.dockerHub]
        self.edge = EdgeConfiguration()
        self.webhooks = []
        self.warm = nil
    }

    /// The upstream serving requests that match no `ns` and no path prefix: the one marked
    /// `default`, or the only upstream when there is exactly one.
    public var defaultUpstream: UpstreamEntry? {
        self.upstreams.first(where: \.isDefault) ?? (self.upstreams.count == 1 ? self.upstreams[0] : nil)
    }
}

/// The cache folder and its size bound (`data`).
public struct DataConfiguration: Sendable, Equatable {
    /// Cache folder (blobs, tmp, LMDB index).
    public var directory: String
    /// Size bound in bytes; `nil` means unbounded.
    public var maxSize: Int64?
    /// Eviction starts when the cache passes this percentage of `maxSize` (1–100).
    public var highWatermark: Int
    /// Eviction runs until the cache is at or under this percentage (below `highWatermark`).
    public var lowWatermark: Int
    /// Bytes of memory for the whole responses of small hot blobs (up to 64 KiB each), over all
    /// listeners; 0 turns it off.
    public var memoryCache: Int64

    public init(directory: String = "./data", maxSize: Int64? = nil, highWatermark: Int = 90, lowWatermark: Int = 80, memoryCache: Int64 = 128 << 20) {
        self.directory = directory
        self.memoryCache = memoryCache
        self.maxSize = maxSize
        self.highWatermark = highWatermark
        self.lowWatermark = lowWatermark
    }
}

/// How clients of the mirror prove who they are.
public enum ClientAuthMode: String, Sendable, Equatable, CaseIterable {
    /// Anyone who can reach the mirror may pull.
    case open
    /// HTTP Basic against a bcrypt htpasswd file.
    case htpasswd
    /// The client's own credentials are passed to the upstream.
    case passthrough
}

/// Who may use the admin API (`admin`): purge, pin, warm now.
public struct AdminConfiguration: Sendable, Equatable {
    /// htpasswd file (bcrypt) of administrators, signing in with Basic.
    public var htpasswdFile: String?
    /// A file whose first line is a bearer token (at least 16 characters).
    public var tokenFile: String?
    /// Accept admin credentials on plain-HTTP listeners too.
    public var allowWithoutTLS: Bool

    public init(htpasswdFile: String? = nil, tokenFile: String? = nil, allowWithoutTLS: Bool = false) {
        self.htpasswdFile = htpasswdFile
        self.tokenFile = tokenFile
        self.allowWithoutTLS = allowWithoutTLS
    }
}

/// Client authentication (`client-auth`).
public struct ClientAuthConfiguration: Sendable, Equatable {
    public var mode: ClientAuthMode
    /// htpasswd file (bcrypt entries); required for mode `htpasswd`, and for `admins` in mode `passthrough`.
    public var htpasswdFile: String?
    /// Allow `htpasswd`/`passthrough` on a plain-HTTP listener (passwords in clear text).
    public var allowWithoutTLS: Bool
    /// Realm in the `WWW-Authenticate: Basic` challenge.
    public var realm: String
    /// htpasswd users who see repository names on `/stats` and `/` in modes `htpasswd` and `passthrough`
    /// (everyone else gets the numbers without names). In mode `open` everyone sees them.
    public var admins: [String]

    public init(
        mode: ClientAuthMode = .open, htpasswdFile: String? = nil, allowWithoutTLS: Bool = false, realm: String = "wharf", admins: [String] = []
    ) {
        self.mode = mode
        self.htpasswdFile = htpasswdFile
        self.allowWithoutTLS = allowWithoutTLS
        self.realm = realm
        self.admins = admins
    }
}
