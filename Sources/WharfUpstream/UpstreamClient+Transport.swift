import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import OCIDistribution
import Synchronization
import WharfText

/// One request on the wire: which request it belongs to (for the health machine) and its trial number.
struct Exchange: Sendable {
    let key: UpstreamRequestKey
    let trial: UInt64?
}

/// Sending requests: redirects, recording every outcome in the health machine, probes.
extension UpstreamClient {
    static let probeTimeout: TimeAmount = .seconds(5)

    func executeFollowingRedirects(
        _ method: HTTPMethod, url: String, headers: HTTPHeaders, authorization: String?, deadline: ContinuousClock.Instant, exchange: Exchange
    ) async throws -> HTTPClientResponse {
        var current = url
        let origin = Self.origin(of: url)
        var hop = 0
        while true {
            let sameOrigin = Self.origin(of: current) == origin
            let response = try await self.execute(
                method, url: current, headers: headers, authorization: sameOrigin ? authorization : nil, deadline: deadline, exchange: exchange,
                foreign: !sameOrigin)
            guard [301, 302, 303, 307, 308].contains(Int(response.status.code)), let location = response.headers.first(name: "location") else {
                return response
            }
            _ = try? await UpstreamResponse.collect(response.body, upTo: 64 * 1024, deadline: .now + .seconds(5))
            do {
                current = try await self.redirects.next(location: location, from: current, hop: hop)
            } catch {
                self.logger.warning("upstream redirect refused", metadata: ["upstream": "\(self.configuration.name)", "reason": "\(error)"])
                throw error
            }
            self.logger.debug("following upstream redirect", metadata: ["to-host": "\(URLComponents(string: current)?.host ?? "?")"])
            hop += 1
        }
    }

    /// Sends one request and records its outcome; its head must arrive by `deadline` (past it, the
    /// request is not sent). `foreign`: the URL is a redirect target on another origin than the upstream's.
    func execute(
        _ method: HTTPMethod, url: String, headers: HTTPHeaders, authorization: String?, deadline: ContinuousClock.Instant, exchange: Exchange,
        foreign: Bool
    ) async throws -> HTTPClientResponse {
        let timeout = deadline - .now
        guard timeout > .zero else {
            throw UpstreamUnreachable(description: "\(method) \(Self.origin(of: url)): no answer within the first-byte timeout (\(self.configuration.firstByteTimeout))")
        }
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers = headers
        request.headers.replaceOrAdd(name: "User-Agent", value: WharfVersion.userAgent)
        if let authorization { request.headers.replaceOrAdd(name: "Authorization", value: authorization) }
        self.sent.add(1, ordering: .relaxed)
        let client = self.clients.client(for: exchange.key.kind, method: method, timeouts: self.configuration.transportTimeouts)
        do {
            let sentAt = ContinuousClock.now
            let response: HTTPClientResponse
            if exchange.key.kind == .blob, method == .GET {
                // Blob bodies (possibly gigabytes) are read in batches: see StreamedBody.
                let blobRequest = try HTTPClient.Request(url: url, method: method, headers: request.headers)
                response = try await StreamedBody.execute(blobRequest, on: client, headDeadline: .now() + Self.timeAmount(timeout), pace: self.configuration.bodyPace)
            } else {
                response = try await client.execute(request, timeout: Self.timeAmount(timeout))
            }
            let took = ContinuousClock.now - sentAt
            self.answers.add(1, ordering: .relaxed)
            self.answerNanoseconds.add(Int(took.components.seconds) * 1_000_000_000 + Int(took.components.attoseconds / 1_000_000_000), ordering: .relaxed)
            let status = Int(response.status.code)
            if status >= 500 { self.failed.add(1, ordering: .relaxed) }
            let outcome = UpstreamOutcome.of(
                status: status, retryAfter: Self.retryAfter(response.headers), quotaExhausted: Self.quotaExhausted(response.headers))
            let limit = response.headers.first(name: "ratelimit-limit"), remaining = response.headers.first(name: "ratelimit-remaining")
            let decision = self.machine.withLock { m in
                m.noteRateLimit(limit: limit, remaining: remaining)
                return m.record(outcome, for: exchange.key, trial: exchange.trial, now: .now, wallClock: Self.now())
            }
            await self.carryOut(decision)
            return response
        } catch {
            let outcome = UpstreamOutcome.classify(error, foreign: foreign)
            if outcome != .notSent { self.failed.add(1, ordering: .relaxed) }
            let decision = self.machine.withLock { $0.record(outcome, for: exchange.key, trial: exchange.trial, now: .now, wallClock: Self.now()) }
            await self.carryOut(decision)
            let prefix = outcome == .notSent ? "no free upstream connection: " : ""
            throw UpstreamUnreachable(
                description: "\(prefix)\(method) \(Self.origin(of: url)): \(error)", malformed: UpstreamUnreachable.isMalformedAnswer(error))
        }
    }

    /// Checks whether the upstream works for everyone — `GET /v2/`, or for tokens an anonymous token
    /// request without scope — and reports the verdict to the health machine.
    func runProbe(_ kind: UpstreamRequestKind) async {
        var url = self.configuration.url + "/v2/"
        if kind == .token {
            let challenge = self.machine.withLock { $0.challenge }
            guard let realm = challenge?.realm, var components = URLComponents(string: realm),
                  components.scheme == "http" || components.scheme == "https"
            else { return await self.finishProbe(kind, .inconclusive, reason: nil) }
            if let service = challenge?.service, !service.isEmpty {
                components.queryItems = (components.queryItems ?? []) + [URLQueryItem(name: "service", value: service)]
            }
            url = components.string ?? realm
        }
        var request = HTTPClientRequest(url: url)
        request.headers.replaceOrAdd(name: "User-Agent", value: WharfVersion.userAgent)
        self.sent.add(1, ordering: .relaxed)
        do {
            let client = self.clients.client(for: kind, method: .GET, timeouts: self.configuration.transportTimeouts)
            let response = try await client.execute(request, timeout: Self.probeTimeout)
            _ = try? await UpstreamResponse.collect(response.body, upTo: 64 * 1024, deadline: .now + .seconds(5))
            let code = Int(response.status.code)
            self.logger.info("upstream probe", metadata: ["upstream": "\(self.configuration.name)", "kind": "\(kind.rawValue)", "status": "\(code)"])
            await self.finishProbe(kind, code < 500 ? .healthy : .unhealthy, reason: "probe answered \(code)")
        } catch {
            let outcome = UpstreamOutcome.classify(error, foreign: false)
            if outcome != .notSent { self.failed.add(1, ordering: .relaxed) }
            await self.finishProbe(kind, outcome == .notSent ? .inconclusive : .unhealthy, reason: "probe failed: \(error)")
        }
    }

    private func finishProbe(_ kind: UpstreamRequestKind, _ verdict: CircuitBreaker.ProbeVerdict, reason: String?) async {
        let decision = self.machine.withLock { $0.probeFinished(kind, verdict: verdict, reason: reason, now: .now, wallClock: Self.now()) }
        await self.carryOut(decision)
    }

    /// `Retry-After` in seconds (the HTTP-date form counts as 60 s); default 10 s. Holds cap it
    /// (``RateLimitHolds``), and so does ``clientRetryAfter(_:)``.
    public static func retryAfter(_ headers: HTTPHeaders) -> Duration {
        guard let raw = headers.first(name: "retry-after") else { return .seconds(10) }
        guard let seconds = Int(raw.trimmingCharacters(in: .whitespaces)) else { return .seconds(60) }
        return .seconds(max(seconds, 1))
    }

    /// The `Retry-After` to pass on to a client for an upstream's 429: the upstream's value read as
    /// ``retryAfter(_:)`` reads it and capped like a hold (1 s … 5 min), as whole seconds. The upstream's
    /// own text never reaches the client.
    public static func clientRetryAfter(_ headers: HTTPHeaders) -> String {
        String(min(Self.retryAfter(headers).components.seconds, RateLimitHolds.longestHold))
    }

    /// Docker Hub's `RateLimit-Remaining: 0;w=21600`: the whole client's quota is spent.
    static func quotaExhausted(_ headers: HTTPHeaders) -> Bool {
        guard let raw = headers.first(name: "ratelimit-remaining") else { return false }
        return raw.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) == "0" } ?? false
    }

    static func origin(of url: String) -> String {
        guard let c = URLComponents(string: url) else { return url }
        return "\(c.scheme ?? "")://\(c.host ?? "")\(c.port.map { ":\($0)" } ?? "")"
    }
}
