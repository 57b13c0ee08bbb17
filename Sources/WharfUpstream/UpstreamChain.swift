import Logging
import NIOHTTP1
import Synchronization

/// An upstream and its fallbacks, asked in order for manifests and blobs as ``FailoverPolicy``
/// decides. Each source is an ``UpstreamClient`` of its own: its own credentials, tokens, health
/// machine, circuit breakers and pull budget. A dead primary's open circuit refuses at once, so once
/// it opened every request goes straight on to the fallbacks; its half-open trial every 10 s finds
/// the primary again when it is back.
public final class UpstreamChain: Sendable {
    public let primary: UpstreamClient
    public let fallbacks: [Fallback]
    private let logger: Logger

    /// One fallback and the answers taken from it.
    public final class Fallback: Sendable {
        public let client: UpstreamClient
        fileprivate let manifests = Atomic<Int>(0)
        fileprivate let blobs = Atomic<Int>(0)
        fileprivate let tags = Atomic<Int>(0)

        init(client: UpstreamClient) { self.client = client }

        /// `host[:port]` of its URL: how logs, `/stats` and metrics name it.
        public var label: String { self.client.configuration.hostAndPort }

        /// Answers used from this fallback: manifests (by tag and digest), blobs (`GET` and `HEAD`),
        /// and the tags among the manifests (resolved while the primary was unreachable).
        public var failovers: (manifests: Int, blobs: Int, tags: Int) {
            (self.manifests.load(ordering: .relaxed), self.blobs.load(ordering: .relaxed), self.tags.load(ordering: .relaxed))
        }
    }

    /// An answer, and which source gave it.
    public struct Answer: Sendable {
        public let response: UpstreamResponse
        public let source: UpstreamClient
        /// Set when a fallback answered.
        public let failover: Failover?

        /// The primary answered (or failed) itself.
        public var fromPrimary: Bool { self.failover == nil }
    }

    /// A request answered by a fallback.
    public struct Failover: Sendable {
        /// The fallback's `host[:port]`.
        public let fallback: String
        /// Why the primary did not serve it.
        public let cause: String
        /// How long the primary took to fail.
        public let primaryFailedAfter: Duration
    }

    public init(primary: UpstreamClient, fallbacks: [UpstreamClient] = []) {
        self.primary = primary
        self.fallbacks = fallbacks.map(Fallback.init)
        self.logger = primary.logger
    }

    /// The primary's name: the cache's index keys use it whichever source served.
    public var name: String { self.primary.configuration.name }
    public var configuration: UpstreamConfiguration { self.primary.configuration }

    /// Sends `method` to `/v2/<repository>/<path>` of the primary, then, as ``FailoverPolicy`` allows,
    /// to each fallback in turn until one answers with a success. Without such an answer the primary's
    /// result stands: its error is thrown, or its answer returned (then without a body).
    public func send(
        _ method: HTTPMethod, repository: String, path: String, headers: HTTPHeaders = [:], as identity: UpstreamIdentity = .mirror
    ) async throws -> Answer {
        guard !self.fallbacks.isEmpty else {
            return Answer(response: try await self.primary.send(method, repository: repository, path: path, headers: headers, as: identity),
                          source: self.primary, failover: nil)
        }
        let addressing = FailoverPolicy.Addressing(path: path)
        let started = ContinuousClock.now
        let primaryOutcome: FailoverPolicy.Outcome
        let primaryResult: Result<UpstreamResponse, any Error>
        do {
            let response = try await self.primary.send(method, repository: repository, path: path, headers: headers, as: identity)
            primaryOutcome = .answered(status: response.status)
            guard FailoverPolicy.afterPrimary(primaryOutcome, addressing: addressing, identity: identity) == .next else {
                return Answer(response: response, source: self.primary, failover: nil)
            }
            // Its status and headers (Retry-After) stand if no fallback answers; its body is dropped,
            // which closes that connection.
            primaryResult = .success(UpstreamResponse(status: response.status, headers: response.headers, body: nil, bodyDeadline: nil))
        } catch {
            primaryOutcome = FailoverPolicy.Outcome(error: error)
            guard FailoverPolicy.afterPrimary(primaryOutcome, addressing: addressing, identity: identity) == .next else { throw error }
            primaryResult = .failure(error)
        }
        let failedAfter = ContinuousClock.now - started
        var refusals: [String] = []
        for fallback in self.fallbacks {
            let outcome: FailoverPolicy.Outcome
            do {
                let response = try await fallback.client.send(method, repository: repository, path: path, headers: headers, as: identity)
                outcome = .answered(status: response.status)
                if FailoverPolicy.afterFallback(outcome) == .accept {
                    self.count(fallback, path: path, addressing: addressing)
                    self.logger.notice("upstream failover: a fallback answered", metadata: [
                        "upstream": "\(self.name)", "fallback": "\(fallback.label)", "method": "\(method)", "repository": "\(repository)",
                        "path": "\(path)", "primary-failure": "\(primaryOutcome.cause)", "primary-failed-after": "\(failedAfter)",
                        "tag": "\(addressing == .byTag)",
                    ])
                    return Answer(
                        response: response, source: fallback.client,
                        failover: Failover(fallback: fallback.label, cause: primaryOutcome.cause, primaryFailedAfter: failedAfter))
                }
            } catch {
                outcome = FailoverPolicy.Outcome(error: error)
            }
            refusals.append("\(fallback.label): \(outcome.cause)")
            if FailoverPolicy.afterFallback(outcome) == .stop { break }
        }
        self.logger.notice("upstream and its fallbacks failed", metadata: [
            "upstream": "\(self.name)", "method": "\(method)", "repository": "\(repository)", "path": "\(path)",
            "primary-failure": "\(primaryOutcome.cause)", "fallbacks": "\(refusals.joined(separator: "; "))",
        ])
        return Answer(response: try primaryResult.get(), source: self.primary, failover: nil)
    }

    private func count(_ fallback: Fallback, path: String, addressing: FailoverPolicy.Addressing) {
        switch UpstreamRequestKind(path: path) {
        case .blob: fallback.blobs.add(1, ordering: .relaxed)
        case .manifest:
            fallback.manifests.add(1, ordering: .relaxed)
            if addressing == .byTag { fallback.tags.add(1, ordering: .relaxed) }
        case .token, .other: break
        }
    }
}
