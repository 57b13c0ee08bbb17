import Foundation
import OCIDistribution

/// Credentials Wharf uses at an upstream's token endpoint. Never logged, never shown.
public struct UpstreamCredentials: Sendable, Hashable, CustomStringConvertible {
    public let username: String
    public let password: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    public var description: String { "UpstreamCredentials(username: \(self.username), password: <redacted>)" }

    /// `Authorization: Basic …` value.
    public var basicAuthorization: String {
        "Basic " + Data("\(self.username):\(self.password)".utf8).base64EncodedString()
    }

    /// Reads `user:password` from the first line of a file.
    public static func load(file path: String) throws -> UpstreamCredentials {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let line = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
            throw ConfigurationError("credentials file \(path) must hold one line 'user:password'")
        }
        return UpstreamCredentials(username: String(line[..<colon]), password: String(line[line.index(after: colon)...]))
    }

    /// `WHARF_UPSTREAM_USERNAME` / `WHARF_UPSTREAM_PASSWORD`, if both are set.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> UpstreamCredentials? {
        guard let u = env["WHARF_UPSTREAM_USERNAME"], !u.isEmpty, let p = env["WHARF_UPSTREAM_PASSWORD"] else { return nil }
        return UpstreamCredentials(username: u, password: p)
    }
}

/// A configuration mistake, explained.
public struct ConfigurationError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { self.description = message }
}

/// One upstream registry.
public struct UpstreamConfiguration: Sendable {
    /// Short name used in the index and logs (e.g. `docker.io`).
    public var name: String
    /// Base URL without trailing slash, e.g. `https://registry-1.docker.io`.
    public let url: String
    public var credentials: UpstreamCredentials?
    /// How long a tag → digest answer is served without asking the upstream again.
    public var tagTTL: Duration
    /// How long past ``tagTTL`` an expired tag is still answered at once from the cache while one
    /// background revalidation runs (zero: off, the request waits for the revalidation).
    public var staleWhileRevalidate: Duration = .zero
    /// Token realms (`scheme://host[:port]`, a path is ignored) that may receive credentials besides
    /// the upstream's own origin; see ``TokenRealmPolicy``. Docker Hub's `https://auth.docker.io` is
    /// trusted for Docker Hub upstreams without being listed.
    public var tokenRealms: [String]
    /// Follow redirects to loopback, private and link-local addresses even when the upstream's own
    /// host is not on such a network (see ``RedirectPolicy``). Off by default.
    public var allowPrivateRedirects: Bool
    /// The longest a manifest, token or other non-blob answer may take, head and body together, so a
    /// body dribbling a byte at a time cannot hold a connection for minutes. Blob bodies are not bound.
    public var bodyTimeout: Duration
    /// The longest a connection to the upstream (or its token realm, or a redirect target) may take.
    public var connectTimeout: Duration = .seconds(5)
    /// The longest a request waits for the upstream's answer to begin (its response head), counted once
    /// for everything it needs first: the challenge ping, a token fetch, redirects. A hung upstream
    /// (accepts, never answers) costs a request no more than this.
    public var firstByteTimeout: Duration = .seconds(8)
    /// The longest an upstream body may go without a byte before the request fails.
    public var idleTimeout: Duration = .seconds(30)
    /// The slowest a blob body may arrive (bytes per window, Wharf's own pauses not counted): a body
    /// that trickles just fast enough to pass ``idleTimeout`` still ends.
    public var bodyPace: BodyPace = .default

    /// The share of a Docker Hub style pull budget (`RateLimit-Limit`) kept for content nobody has, in
    /// percent: below it cached tags are not revalidated with a `GET` and warming pauses.
    public var rateLimitReservePercent: Int = 10

    /// Everything a client is made with, as one string (a secret only as a hash): a reload keeps an
    /// upstream's clients while it is the same.
    public var reloadKey: String {
        let fields: [String] = [
            self.name, self.url, Self.credentialKey(self.credentials), "\(self.tagTTL)", "\(self.staleWhileRevalidate)",
            self.tokenRealms.joined(separator: ","), "\(self.allowPrivateRedirects)", "\(self.bodyTimeout)", "\(self.connectTimeout)",
            "\(self.firstByteTimeout)", "\(self.idleTimeout)", "\(self.rateLimitReservePercent)",
            "\(self.bodyPace.minimumBytes)/\(self.bodyPace.window)",
        ]
        return fields.joined(separator: "\u{1}")
    }

    static func credentialKey(_ c: UpstreamCredentials?) -> String {
        c.map { Digest.sha256(of: Array("\($0.username)\u{0}\($0.password)".utf8)).hex } ?? "-"
    }

    /// The per-connection bounds, which pick the HTTP client (see ``UpstreamHTTPClients``).
    public var transportTimeouts: UpstreamTransportTimeouts { UpstreamTransportTimeouts(connect: self.connectTimeout, idle: self.idleTimeout) }

    public static let dockerHubURL = "https://registry-1.docker.io"

    /// The configuration of a fallback of this upstream: its own URL, credentials and token realms,
    /// everything else (timeouts, TTLs, redirect policy, rate-limit reserve) inherited. Named by its
    /// `host[:port]`, which is how logs, `/stats` and metrics show it; the cache's index keys stay the
    /// primary's name.
    public func fallback(_ fallback: UpstreamFallback) throws -> UpstreamConfiguration {
        var c = try UpstreamConfiguration(
            url: fallback.url, credentials: fallback.credentials, tagTTL: self.tagTTL, tokenRealms: fallback.tokenRealms,
            allowPrivateRedirects: self.allowPrivateRedirects, bodyTimeout: self.bodyTimeout)
        c.name = c.hostAndPort
        c.staleWhileRevalidate = self.staleWhileRevalidate
        c.connectTimeout = self.connectTimeout
        c.firstByteTimeout = self.firstByteTimeout
        c.idleTimeout = self.idleTimeout
        c.bodyPace = self.bodyPace
        c.rateLimitReservePercent = self.rateLimitReservePercent
        return c
    }

    public init(
        name: String? = nil, url: String, credentials: UpstreamCredentials? = nil, tagTTL: Duration = .seconds(300),
        tokenRealms: [String] = [], allowPrivateRedirects: Bool = false, bodyTimeout: Duration = .seconds(30)
    ) throws {
        var u = url
        while u.hasSuffix("/") { u.removeLast() }
        guard let parsed = URLComponents(string: u), let scheme = parsed.scheme, ["http", "https"].contains(scheme),
              let host = parsed.host, !host.isEmpty, parsed.query == nil, parsed.user == nil
        else { throw ConfigurationError("upstream URL '\(url)' must look like https://host[:port]") }
        for realm in tokenRealms where TokenRealmPolicy.Origin(realm) == nil {
            throw ConfigurationError("token realm '\(realm)' must look like https://host[:port]")
        }
        self.url = u
        self.host = host
        self.hostAndPort = host + (parsed.port.map { ":\($0)" } ?? "")
        self.isDockerHub = Self.isDockerHubHost(host)
        self.name = name ?? (Self.isDockerHubHost(host) ? "docker.io" : host + (parsed.port.map { ":\($0)" } ?? ""))
        self.credentials = credentials
        self.tagTTL = tagTTL
        self.tokenRealms = tokenRealms
        self.allowPrivateRedirects = allowPrivateRedirects
        self.bodyTimeout = bodyTimeout
    }

    public let host: String

    /// `host` or `host:port`, as containerd writes it in `ns`.
    public let hostAndPort: String

    /// Docker Hub keeps official images under `library/` (checked on every request: stored, not parsed).
    public let isDockerHub: Bool

    static func isDockerHubHost(_ host: String) -> Bool {
        ["registry-1.docker.io", "docker.io", "index.docker.io", "registry.hub.docker.com"].contains(host.lowercased())
    }
}

/// Another registry serving an upstream's content (a public mirror, an in-house copy), asked when the
/// upstream is unreachable or refuses (see ``FailoverPolicy``).
public struct UpstreamFallback: Sendable {
    /// `http(s)://host[:port]`.
    public var url: String
    /// Wharf's credentials at this fallback (never the primary's).
    public var credentials: UpstreamCredentials?
    /// Token realms besides the fallback's own origin that may receive ``credentials``.
    public var tokenRealms: [String]

    /// See ``UpstreamConfiguration/reloadKey``.
    public var reloadKey: String {
        [self.url, UpstreamConfiguration.credentialKey(self.credentials), self.tokenRealms.joined(separator: ",")].joined(separator: "\u{1}")
    }

    public init(url: String, credentials: UpstreamCredentials? = nil, tokenRealms: [String] = []) {
        self.url = url
        self.credentials = credentials
        self.tokenRealms = tokenRealms
    }
}
