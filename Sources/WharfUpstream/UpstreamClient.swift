import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import OCIDistribution
import Synchronization

/// An answer from the upstream. `body` is nil when Wharf already consumed it (e.g. a final 401).
public struct UpstreamResponse: Sendable {
    public let status: Int
    public let headers: HTTPHeaders
    public let body: HTTPClientResponse.Body?

    /// Reads the whole body, refusing more than `limit` bytes.
    public func collect(upTo limit: Int) async throws -> ByteBuffer {
        guard let body else { return ByteBuffer() }
        return try await body.collect(upTo: limit)
    }

    public var contentLength: Int64? { self.headers.first(name: "content-length").flatMap { Int64($0) } }
}

/// What Wharf last saw of an upstream: reachability and Docker Hub style rate-limit headers.
public struct UpstreamHealth: Sendable, Codable {
    public var reachable: Bool?
    public var lastSuccessAt: UInt64?
    public var lastErrorAt: UInt64?
    public var lastError: String?
    public var rateLimitLimit: String?
    public var rateLimitRemaining: String?
    public var circuit: CircuitBreaker.State = .closed
}

/// The upstream answered 429 recently; manifest requests wait until `Retry-After` has passed.
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

/// Talks to one upstream registry: token auth (Bearer via the realm, or Basic), token cache,
/// and redirects followed by hand, without `Authorization` on other hosts.
public final class UpstreamClient: Sendable {
    public let configuration: UpstreamConfiguration
    private let http: HTTPClient
    private let logger: Logger
    private let tokens = TokenCache()
    private let challenge = Mutex<AuthChallenge?>(nil)
    /// One `/v2/` probe in flight to learn the challenge before the first content request.
    private let probe = Mutex<Task<Void, Never>?>(nil)
    private let probed = Atomic<Bool>(false)
    private let healthState = Mutex(UpstreamHealth())
    private let breaker: Mutex<CircuitBreaker>
    /// Set by a 429: manifest requests (the rate-limited kind) are not sent before this instant.
    private let rateLimitedUntil = Mutex<ContinuousClock.Instant?>(nil)
    private let reachabilityObserver = Mutex<(@Sendable (_ reachable: Bool, _ reason: String?) -> Void)?>(nil)
    private let sent = Atomic<Int>(0)
    private let failed = Atomic<Int>(0)

    /// Requests sent to this upstream (token fetches included) and how many failed (transport or 5xx).
    public var requestCounts: (requests: Int, errors: Int) { (self.sent.load(ordering: .relaxed), self.failed.load(ordering: .relaxed)) }

    /// Reachability, circuit state and rate-limit information as last seen.
    public var health: UpstreamHealth {
        var h = self.healthState.withLock { $0 }
        h.circuit = self.breaker.withLock { $0.state }
        return h
    }

    public init(configuration: UpstreamConfiguration, httpClient: HTTPClient, logger: Logger, breaker: CircuitBreaker = CircuitBreaker()) {
        self.configuration = configuration
        self.breaker = Mutex(breaker)
        self.http = httpClient
        self.logger = logger
    }

    /// An HTTP client set up for upstream use: no automatic redirects, no decompression.
    public static func makeHTTPClient() -> HTTPClient {
        var config = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(5), read: .seconds(60)),
            connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64),
            ignoreUncleanSSLShutdown: false,
            decompression: .disabled
        )
        config.httpVersion = .automatic
        // Fail at once on a refused connection (the circuit breaker and stale serving take over)
        // instead of retrying until the connect timeout.
        config.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    /// Called when the upstream becomes unreachable (transport failure or 5xx) or reachable again.
    public func observeReachability(_ observer: @escaping @Sendable (_ reachable: Bool, _ reason: String?) -> Void) {
        self.reachabilityObserver.withLock { $0 = observer }
    }

    private func recordReachability(_ reachable: Bool, reason: String?, update: (inout UpstreamHealth) -> Void) {
        let changed = self.healthState.withLock { h -> Bool in
            let before = h.reachable
            update(&h)
            h.reachable = reachable
            return before != reachable && !(before == nil && reachable)
        }
        if changed, let observer = self.reachabilityObserver.withLock({ $0 }) { observer(reachable, reason) }
    }

    /// `GET /v2/` — learns the auth challenge. Returns the status.
    public func ping() async throws -> Int {
        let response = try await self.execute(.GET, url: self.configuration.url + "/v2/", headers: [:], authorization: nil)
        if response.status == .unauthorized { self.learnChallenge(response.headers) }
        _ = try? await response.body.collect(upTo: 64 * 1024)
        self.probed.store(true, ordering: .relaxed)
        return Int(response.status.code)
    }

    /// Sends `method` to `/v2/<repository>/<path>` with pull authorization for `repository`.
    public func send(
        _ method: HTTPMethod, repository: String, path: String, query: String? = nil, headers: HTTPHeaders = [:],
        timeout: TimeAmount = .seconds(60), as identity: UpstreamIdentity = .mirror
    ) async throws -> UpstreamResponse {
        var url = "\(self.configuration.url)/v2/\(repository)/\(path)"
        if let query, !query.isEmpty { url += "?" + query }
        let scope = "repository:\(repository):pull"
        if path.hasPrefix("manifests/"), let until = self.rateLimitedUntil.withLock({ $0 }), ContinuousClock.now < until {
            throw UpstreamBackoff(retryAfter: until - ContinuousClock.now)
        }
        guard self.breaker.withLock({ $0.allowRequest() }) else {
            throw UpstreamCircuitOpen(upstream: self.configuration.name)
        }
        await self.learnChallengeOnce()
        var refresh = false
        for attempt in 0..<2 {
            let authorization = try await self.authorization(scope: scope, refresh: refresh, identity: identity)
            let response = try await self.executeFollowingRedirects(method, url: url, headers: headers, authorization: authorization, timeout: timeout)
            guard response.status == .unauthorized, attempt == 0 else {
                return UpstreamResponse(status: Int(response.status.code), headers: response.headers, body: response.body)
            }
            _ = try? await response.body.collect(upTo: 64 * 1024)
            let learned = self.learnChallenge(response.headers)
            guard learned else {
                return UpstreamResponse(status: 401, headers: response.headers, body: nil)
            }
            refresh = authorization != nil
            self.logger.debug("upstream asked for authorization", metadata: ["repository": "\(repository)", "refresh": "\(refresh)"])
        }
        preconditionFailure("unreachable")
    }

    // MARK: Authorization

    /// Pings `/v2/` once so that even the first content request carries credentials (one GET per blob upstream).
    private func learnChallengeOnce() async {
        guard !self.probed.load(ordering: .relaxed) else { return }
        let task = self.probe.withLock { p -> Task<Void, Never> in
            if let running = p { return running }
            let t = Task { _ = try? await self.ping() }
            p = t
            return t
        }
        await task.value
        // A failed probe (upstream down) may be retried by a later request.
        if !self.probed.load(ordering: .relaxed) { self.probe.withLock { $0 = nil } }
    }

    @discardableResult
    private func learnChallenge(_ headers: HTTPHeaders) -> Bool {
        let all = AuthChallenge.parse(headers: headers["www-authenticate"])
        guard let chosen = all.first(where: { $0.scheme == "bearer" && $0.realm != nil }) ?? all.first(where: { $0.scheme == "basic" }) else {
            return false
        }
        self.challenge.withLock { $0 = chosen }
        return true
    }

    private func authorization(scope: String, refresh: Bool, identity: UpstreamIdentity) async throws -> String? {
        guard let challenge = self.challenge.withLock({ $0 }) else { return nil }
        let credentials: UpstreamCredentials?
        switch identity {
        case .mirror: credentials = self.configuration.credentials
        case .client(let c): credentials = c
        }
        if challenge.scheme == "basic" { return credentials?.basicAuthorization }
        guard let realm = challenge.realm else { return nil }
        let service = challenge.service ?? ""
        let sendCredentials = credentials != nil && Self.sharesTrustDomain(realm: realm, upstream: self.configuration.url)
        // Keyed by identity (a hash for clients), so a token fetched for one client never serves another.
        let key = TokenCache.Key(realm: realm, service: service, scope: scope, identity: sendCredentials ? identity.cacheKey : "")
        let token = try await self.tokens.token(for: key, invalidate: refresh) { [self] in
            try await self.fetchToken(realm: realm, service: service, scope: scope, credentials: sendCredentials ? credentials : nil)
        }
        return "Bearer " + token
    }

    private func fetchToken(realm: String, service: String, scope: String, credentials: UpstreamCredentials?) async throws -> TokenCache.Entry {
        guard var components = URLComponents(string: realm), components.scheme == "https" || components.scheme == "http" else {
            throw UpstreamUnreachable(description: "upstream token realm is not an http(s) URL")
        }
        var items = components.queryItems ?? []
        if !service.isEmpty { items.append(URLQueryItem(name: "service", value: service)) }
        items.append(URLQueryItem(name: "scope", value: scope))
        if let credentials { items.append(URLQueryItem(name: "account", value: credentials.username)) }
        components.queryItems = items
        guard let url = components.string else { throw UpstreamUnreachable(description: "bad token realm") }
        var headers = HTTPHeaders()
        if let credentials { headers.add(name: "Authorization", value: credentials.basicAuthorization) }
        let started = ContinuousClock.now
        let response = try await self.execute(.GET, url: url, headers: headers, authorization: nil, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .ok else {
            if credentials != nil, response.status == .unauthorized || response.status == .forbidden { throw UpstreamCredentialsRejected() }
            throw UpstreamUnreachable(description: "token endpoint answered \(response.status.code)")
        }
        let parsed = try JSONDecoder().decode(TokenResponse.self, from: Data(body.readableBytesView))
        guard let token = parsed.access_token ?? parsed.token, !token.isEmpty else {
            throw UpstreamUnreachable(description: "token endpoint returned no token")
        }
        let lifetime = max(1, parsed.expires_in ?? 60)
        let margin = min(30.0, Double(lifetime) / 2)
        return TokenCache.Entry(token: token, refreshAt: started + .milliseconds(Int64((Double(lifetime) - margin) * 1000)))
    }

    private struct TokenResponse: Decodable {
        let token: String?
        let access_token: String?
        let expires_in: Int?
    }

    /// Credentials go only to a realm on the upstream's own host or registrable domain.
    static func sharesTrustDomain(realm: String, upstream: String) -> Bool {
        guard let r = URLComponents(string: realm)?.host?.lowercased(), let u = URLComponents(string: upstream)?.host?.lowercased() else {
            return false
        }
        if r == u { return true }
        let isIP = { (h: String) in h.allSatisfy { $0.isNumber || $0 == "." } || h.contains(":") }
        guard !isIP(r), !isIP(u) else { return false }
        let tail = { (h: String) in h.split(separator: ".").suffix(2).joined(separator: ".") }
        return tail(r) == tail(u)
    }

    // MARK: Transport

    private func executeFollowingRedirects(
        _ method: HTTPMethod, url: String, headers: HTTPHeaders, authorization: String?, timeout: TimeAmount
    ) async throws -> HTTPClientResponse {
        var current = url
        let origin = Self.origin(of: url)
        for _ in 0..<6 {
            let sameOrigin = Self.origin(of: current) == origin
            let response = try await self.execute(method, url: current, headers: headers, authorization: sameOrigin ? authorization : nil, timeout: timeout)
            guard [301, 302, 303, 307, 308].contains(Int(response.status.code)), let location = response.headers.first(name: "location"),
                  let next = URL(string: location, relativeTo: URL(string: current))?.absoluteString
            else { return response }
            _ = try? await response.body.collect(upTo: 64 * 1024)
            self.logger.debug("following upstream redirect", metadata: ["to-host": "\(URLComponents(string: next)?.host ?? "?")"])
            current = next
        }
        throw UpstreamUnreachable(description: "too many upstream redirects")
    }

    private func execute(
        _ method: HTTPMethod, url: String, headers: HTTPHeaders, authorization: String?, timeout: TimeAmount = .seconds(30)
    ) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers = headers
        request.headers.replaceOrAdd(name: "User-Agent", value: "wharf/0.1")
        if let authorization { request.headers.replaceOrAdd(name: "Authorization", value: authorization) }
        self.sent.add(1, ordering: .relaxed)
        do {
            let response = try await self.http.execute(request, timeout: timeout)
            if response.status.code >= 500 { self.failed.add(1, ordering: .relaxed) }
            self.breaker.withLock { b in
                if response.status.code >= 500 { b.recordFailure() } else { b.recordSuccess() }
            }
            if response.status.code == 429 {
                let until = ContinuousClock.now + Self.retryAfter(response.headers)
                self.rateLimitedUntil.withLock { $0 = max($0 ?? until, until) }
            }
            let limit = response.headers.first(name: "ratelimit-limit"), remaining = response.headers.first(name: "ratelimit-remaining")
            let now = Self.now()
            let up = response.status.code < 500
            self.recordReachability(up, reason: up ? nil : "HTTP \(response.status.code)") { h in
                if up { h.lastSuccessAt = now } else { h.lastErrorAt = now; h.lastError = "HTTP \(response.status.code)" }
                if let limit { h.rateLimitLimit = limit }
                if let remaining { h.rateLimitRemaining = remaining }
            }
            return response
        } catch {
            self.failed.add(1, ordering: .relaxed)
            let description = "\(method) \(Self.origin(of: url)): \(error)"
            self.breaker.withLock { $0.recordFailure() }
            let now = Self.now()
            self.recordReachability(false, reason: description) { h in
                h.lastErrorAt = now
                h.lastError = description
            }
            throw UpstreamUnreachable(description: description)
        }
    }

    static func now() -> UInt64 { UInt64(Date().timeIntervalSince1970) }

    /// `Retry-After` in seconds (the HTTP-date form counts as 60 s); default 10 s, at most 1 h.
    static func retryAfter(_ headers: HTTPHeaders) -> Duration {
        guard let raw = headers.first(name: "retry-after") else { return .seconds(10) }
        guard let seconds = Int(raw.trimmingCharacters(in: .whitespaces)) else { return .seconds(60) }
        return .seconds(min(max(seconds, 1), 3600))
    }

    static func origin(of url: String) -> String {
        guard let c = URLComponents(string: url) else { return url }
        return "\(c.scheme ?? "")://\(c.host ?? "")\(c.port.map { ":\($0)" } ?? "")"
    }
}
