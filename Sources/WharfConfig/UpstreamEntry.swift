/// One upstream registry and how requests are routed to it (`upstreams[]`).
public struct UpstreamEntry: Sendable, Equatable {
    /// Unique short name, `[a-z0-9][a-z0-9._-]*`.
    public var name: String
    /// Base URL, `http(s)://host[:port]`.
    public var url: String
    /// Serves requests that match no namespace and no path prefix.
    public var isDefault: Bool
    /// containerd `ns` values (`host` or `host:port`, lowercase) routed here.
    public var namespaces: [String]
    /// Leading repository path component(s) routed here: `/v2/<prefix>/<repo>/…`.
    public var pathPrefix: String?
    /// Where Wharf's own credentials for this upstream come from; `nil` pulls anonymously.
    public var credentials: CredentialSource?
    /// Seconds a tag → digest answer is served without asking the upstream.
    public var tagTTLSeconds: Int
    /// Seconds past the tag TTL during which an expired tag is answered from the cache at once while
    /// one background revalidation runs (0: off).
    public var staleWhileRevalidateSeconds: Int = 0
    /// Seconds a connection to the upstream may take.
    public var connectTimeoutSeconds: Int = 5
    /// Seconds a request waits for the upstream's answer to begin, token fetch and redirects included.
    public var firstByteTimeoutSeconds: Int = 8
    /// Seconds an upstream body may go without a byte.
    public var idleTimeoutSeconds: Int = 30
    /// Percent of a Docker Hub style pull budget (`RateLimit-Limit`) kept for content nobody has.
    public var rateLimitReservePercent: Int = 10
    /// Glob patterns of repositories that may be pulled (empty: all not denied).
    public var allow: [String]
    /// Glob patterns of repositories that may not be pulled (wins over `allow`).
    public var deny: [String]
    /// `REPO[:TAG]` or `REPO@sha256:HEX` images whose cached blobs are never evicted.
    public var pins: [String]
    /// Token realm origins (`http(s)://host[:port]`) that may receive credentials besides the upstream's
    /// own scheme, host and port.
    public var tokenRealms: [String]
    /// Follow redirects to loopback, private and link-local addresses even from a public upstream.
    public var allowPrivateRedirects: Bool
    /// Registries serving the same content, asked in order when this one is unreachable or refuses.
    public var fallbacks: [FallbackEntry] = []

    public init(
        name: String, url: String, isDefault: Bool = false, namespaces: [String] = [], pathPrefix: String? = nil,
        credentials: CredentialSource? = nil, tagTTLSeconds: Int = 300, allow: [String] = [], deny: [String] = [],
        pins: [String] = [], tokenRealms: [String] = [], allowPrivateRedirects: Bool = false
    ) {
        self.name = name
        self.url = url
        self.isDefault = isDefault
        self.namespaces = namespaces
        self.pathPrefix = pathPrefix
        self.credentials = credentials
        self.tagTTLSeconds = tagTTLSeconds
        self.allow = allow
        self.deny = deny
        self.pins = pins
        self.tokenRealms = tokenRealms
        self.allowPrivateRedirects = allowPrivateRedirects
    }

    /// The built-in upstream: `dockerhub`, `https://registry-1.docker.io`, default.
    public static let dockerHub = UpstreamEntry(name: "dockerhub", url: "https://registry-1.docker.io", isDefault: true)
}

/// Another registry serving an upstream's content (`upstreams[].fallbacks[]`): its own URL,
/// credentials and token realms; everything else is the upstream's.
public struct FallbackEntry: Sendable, Equatable {
    /// Base URL, `http(s)://host[:port]`.
    public var url: String
    /// Where Wharf's credentials for this fallback come from; `nil` pulls anonymously.
    public var credentials: CredentialSource?
    /// Token realm origins besides the fallback's own that may receive its credentials.
    public var tokenRealms: [String]

    public init(url: String, credentials: CredentialSource? = nil, tokenRealms: [String] = []) {
        self.url = url
        self.credentials = credentials
        self.tokenRealms = tokenRealms
    }
}

/// Where upstream credentials come from. Secrets are never written in the configuration itself.
public enum CredentialSource: Sendable, Equatable {
    /// A file whose first line is `user:password`.
    case file(String)
    /// Names of the environment variables holding the user name and the password.
    case environment(username: String, password: String)
}
