import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import OCIDistribution
import Synchronization
import WharfClock

/// Talks to one upstream registry: token auth (Bearer via the realm, or Basic), token cache,
/// redirects followed by hand under ``RedirectPolicy`` (without `Authorization` on other hosts), and
/// the upstream's health — circuit breakers per request kind, 429 holds, reachability, the auth
/// challenge it last sent — as one ``UpstreamHealthMachine`` behind one lock.
public final class UpstreamClient: Sendable {
    public let configuration: UpstreamConfiguration
    let clients: UpstreamHTTPClients
    let logger: Logger
    let tokens: TokenCache
    /// Token lifetimes are measured on it.
    let clock: WharfClock
    /// One `/v2/` ping in flight to learn the challenge before the first content request.
    private let challengePing = Mutex<Task<Void, Never>?>(nil)
    private let pinged = Atomic<Bool>(false)
    let machine: Mutex<UpstreamHealthMachine>
    let redirects: RedirectPolicy
    let realms: TokenRealmPolicy
    private let reachabilityObserver = Mutex<(@Sendable (_ reachable: Bool, _ reason: String?) -> Void)?>(nil)
    let sent = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    private let received = Atomic<Int>(0)
    /// Pull budgets per identity, from the upstream's `RateLimit-*` headers.
    let budgets: Mutex<RateLimitBudgets>
    let budgetRefused = Atomic<Int>(0)
    let answers = Atomic<Int>(0)
    let answerNanoseconds = Atomic<Int>(0)

    /// Answers received (any status) and the sum of their first-byte times: the dashboard's latency.
    public var latencyTotals: (answers: Int, nanoseconds: Int) {
        (self.answers.load(ordering: .relaxed), self.answerNanoseconds.load(ordering: .relaxed))
    }

    /// Requests sent to this upstream (token fetches and probes included) and how many failed
    /// (transport or 5xx; waiting for a free connection of Wharf's own pool is not a failure).
    public var requestCounts: (requests: Int, errors: Int) { (self.sent.load(ordering: .relaxed), self.failed.load(ordering: .relaxed)) }

    /// Blob body bytes received from this upstream (counted by whoever reads the bodies: fills and range relays).
    public var bytesReceived: Int { self.received.load(ordering: .relaxed) }

    /// Counts `n` blob body bytes read from one of this upstream's answers.
    public func countReceived(_ n: Int) { self.received.add(n, ordering: .relaxed) }

    /// Reachability, circuit states, holds and rate-limit information as last seen.
    public var health: UpstreamHealth { self.machine.withLock { $0.health(now: .now) } }

    public init(configuration: UpstreamConfiguration, httpClients: UpstreamHTTPClients, logger: Logger, clock: WharfClock = .system) {
        self.configuration = configuration
        self.clock = clock
        self.tokens = TokenCache(clock: clock)
        self.clients = httpClients
        self.logger = logger
        self.machine = Mutex(UpstreamHealthMachine())
        self.redirects = RedirectPolicy(
            upstreamHost: configuration.host, allowPrivate: configuration.allowPrivateRedirects, resolver: httpClients.resolver)
        self.realms = TokenRealmPolicy(configuration: configuration)
        self.budgets = Mutex(RateLimitBudgets(reservePercent: configuration.rateLimitReservePercent))
    }

    /// Where `identity`'s pull budget stands (``RateLimitMode/normal`` when the upstream sends no
    /// `RateLimit-*` headers).
    public func rateLimitMode(for identity: UpstreamIdentity = .mirror) -> RateLimitMode {
        self.budgets.withLock { $0.mode(identity: identity.cacheKey, now: .now) }
    }

    /// Every identity's pull budget at this upstream.
    public var rateLimitBudgets: [RateLimitBudget] { self.budgets.withLock { $0.snapshot(now: .now) } }

    /// Manifest `GET`s refused because the budget was spent, without asking the upstream.
    public var budgetRefusals: Int { self.budgetRefused.load(ordering: .relaxed) }

    /// An HTTP client set up for upstream use: no automatic redirects, no decompression, at most
    /// `connectionsPerHost` connections per host, `timeouts.connect` to connect and `timeouts.idle`
    /// without a byte. ``UpstreamHTTPClients/make(blobConnectionsPerHost:metadataConnectionsPerHost:connectTimeout:resolver:)``
    /// makes the two an ``UpstreamClient`` needs.
    public static func makeHTTPClient(connectionsPerHost: Int = 64, timeouts: UpstreamTransportTimeouts = .default) -> HTTPClient {
        var config = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: Self.timeAmount(timeouts.connect), read: Self.timeAmount(timeouts.idle)),
            connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: connectionsPerHost),
            ignoreUncleanSSLShutdown: false,
            decompression: .disabled
        )
        config.httpVersion = .automatic
        // Fail at once on a refused connection (the circuit breaker and stale serving take over)
        // instead of retrying until the connect timeout.
        config.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    /// Called when the upstream becomes unreachable (its host refuses connections, or a circuit
    /// opened) or reachable again.
    public func observeReachability(_ observer: @escaping @Sendable (_ reachable: Bool, _ reason: String?) -> Void) {
        self.reachabilityObserver.withLock { $0 = observer }
    }

    /// `GET /v2/` — learns the auth challenge. Returns the status.
    public func ping() async throws -> Int {
        let exchange = Exchange(key: UpstreamRequestKey(kind: .other, repository: nil, reference: "/v2/"), trial: nil)
        let response = try await self.execute(
            .GET, url: self.configuration.url + "/v2/", headers: [:], authorization: nil, deadline: .now + self.configuration.firstByteTimeout,
            exchange: exchange, foreign: false)
        if response.status == .unauthorized { self.learnChallenge(response.headers) }
        _ = try? await UpstreamResponse.collect(response.body, upTo: 64 * 1024, deadline: .now + self.configuration.bodyTimeout)
        self.pinged.store(true, ordering: .relaxed)
        return Int(response.status.code)
    }

    /// Sends `method` to `/v2/<repository>/<path>` with pull authorization for `repository`.
    ///
    /// Throws ``UpstreamBackoff`` while a 429 holds manifest requests of `repository`,
    /// ``UpstreamCircuitOpen`` while the circuit of this kind of request is open, and
    /// ``UpstreamRedirectRefused`` for a redirect ``RedirectPolicy`` does not follow. The answer must
    /// begin within ``UpstreamConfiguration/firstByteTimeout`` of the call, whatever it needed first
    /// (the challenge ping, a token, redirects). Except for blob `GET`s, it must also arrive in full
    /// within ``UpstreamConfiguration/bodyTimeout`` (``UpstreamResponse/collect(upTo:)`` enforces it for
    /// the body); any body fails after ``UpstreamConfiguration/idleTimeout`` without a byte.
    public func send(
        _ method: HTTPMethod, repository: String, path: String, query: String? = nil, headers: HTTPHeaders = [:],
        as identity: UpstreamIdentity = .mirror
    ) async throws -> UpstreamResponse {
        var url = "\(self.configuration.url)/v2/\(repository)/\(path)"
        if let query, !query.isEmpty { url += "?" + query }
        let scope = "repository:\(repository):pull"
        let key = UpstreamRequestKey(repository: repository, path: path)
        let trial = try self.admit(key)
        defer { self.machine.withLock { $0.finished(key.kind, trial: trial) } }
        if key.kind == .manifest { try self.spendBudget(method, identity: identity) }
        let started = ContinuousClock.now
        let bounded = !(key.kind == .blob && method == .GET)
        let deadline = bounded ? started + self.configuration.bodyTimeout : nil
        let firstByte = started + (bounded ? min(self.configuration.firstByteTimeout, self.configuration.bodyTimeout) : self.configuration.firstByteTimeout)
        await self.learnChallengeOnce()
        var refresh = false
        for attempt in 0..<2 {
            let authorization = try await self.authorization(scope: scope, refresh: refresh, identity: identity, deadline: firstByte)
            let response = try await self.executeFollowingRedirects(
                method, url: url, headers: headers, authorization: authorization, deadline: firstByte, exchange: Exchange(key: key, trial: trial))
            if key.kind == .manifest { self.observeBudget(response.headers, identity: identity) }
            guard response.status == .unauthorized, attempt == 0 else {
                return UpstreamResponse(status: Int(response.status.code), headers: response.headers, body: response.body, bodyDeadline: deadline)
            }
            _ = try? await UpstreamResponse.collect(response.body, upTo: 64 * 1024, deadline: deadline ?? .now + .seconds(5))
            let learned = self.learnChallenge(response.headers)
            guard learned else {
                return UpstreamResponse(status: 401, headers: response.headers, body: nil, bodyDeadline: nil)
            }
            refresh = authorization != nil
            self.logger.debug("upstream asked for authorization", metadata: ["repository": "\(repository)", "refresh": "\(refresh)"])
        }
        preconditionFailure("unreachable")
    }

    // MARK: Budget

    /// A manifest `GET` spends one pull of `identity`'s budget; with none left it is refused here.
    private func spendBudget(_ method: HTTPMethod, identity: UpstreamIdentity) throws {
        guard method == .GET else { return }
        let refusal = self.budgets.withLock { b -> Duration? in
            let now = ContinuousClock.now
            if case .exhausted(let wait) = b.mode(identity: identity.cacheKey, now: now) { return wait }
            b.spend(identity: identity.cacheKey, now: now)
            return nil
        }
        guard let refusal else { return }
        self.budgetRefused.add(1, ordering: .relaxed)
        throw UpstreamBackoff(retryAfter: refusal)
    }

    private func observeBudget(_ headers: HTTPHeaders, identity: UpstreamIdentity) {
        let limit = headers.first(name: "ratelimit-limit"), remaining = headers.first(name: "ratelimit-remaining")
        guard remaining != nil else { return }
        self.budgets.withLock { $0.observe(identity: identity.cacheKey, limit: limit, remaining: remaining, now: .now) }
    }

    // MARK: Health

    /// Asks the health machine whether a request for `key` may go; returns its trial number, if any.
    func admit(_ key: UpstreamRequestKey) throws -> UInt64? {
        switch self.machine.withLock({ $0.admit(key, now: .now) }) {
        case .proceed(let trial): return trial
        case .held(let wait): throw UpstreamBackoff(retryAfter: wait)
        case .circuitOpen: throw UpstreamCircuitOpen(upstream: self.configuration.name)
        }
    }

    /// Carries out a decision of the health machine: tells the observer, starts the probe it asked for.
    func carryOut(_ decision: UpstreamHealthMachine.Decision) async {
        if let change = decision.reachabilityChanged, let observer = self.reachabilityObserver.withLock({ $0 }) {
            observer(change.reachable, change.reason)
        }
        // The probe runs on its own: the request that asked for it has failed already and must not wait
        // for the probe's timeout too. The health machine asks for one probe per kind at a time.
        if let kind = decision.probe { Task { await self.runProbe(kind) } }
    }

    // MARK: Challenge

    /// Pings `/v2/` once so that even the first content request carries credentials (one GET per blob upstream).
    private func learnChallengeOnce() async {
        guard !self.pinged.load(ordering: .relaxed) else { return }
        let task = self.challengePing.withLock { p -> Task<Void, Never> in
            if let running = p { return running }
            let t = Task { _ = try? await self.ping() }
            p = t
            return t
        }
        await task.value
        // A failed ping (upstream down) may be retried by a later request.
        if !self.pinged.load(ordering: .relaxed) { self.challengePing.withLock { $0 = nil } }
    }

    /// The next request pings `/v2/` again (the challenge was forgotten).
    func relearnChallenge() {
        self.challengePing.withLock { $0 = nil }
        self.pinged.store(false, ordering: .relaxed)
    }

    @discardableResult
    func learnChallenge(_ headers: HTTPHeaders) -> Bool {
        guard let chosen = Self.usableChallenge(headers["www-authenticate"]) else { return false }
        self.machine.withLock { $0.challengeLearned(chosen) }
        return true
    }

    /// The challenge to learn from `WWW-Authenticate` values: a `Bearer` one whose realm is an http(s) URL with
    /// a host, else a `Basic` one. Any other (`realm=`, `realm="file:///x"`) is no way to get a token.
    static func usableChallenge(_ values: [String]) -> AuthChallenge? {
        let all = AuthChallenge.parse(headers: values)
        let bearer = all.first { $0.scheme == "bearer" && $0.realm.flatMap(TokenRealmPolicy.Origin.init) != nil }
        return bearer ?? all.first { $0.scheme == "basic" }
    }

    static func now() -> UInt64 { UInt64(Date().timeIntervalSince1970) }

    static func timeAmount(_ d: Duration) -> TimeAmount {
        let (seconds, attoseconds) = d.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
