import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import Synchronization

/// The bounds async-http-client sets per client rather than per request: connecting, and a body (or
/// an answer) without a byte. Upstreams with other values than the defaults get clients of their own.
public struct UpstreamTransportTimeouts: Sendable, Hashable {
    public var connect: Duration
    public var idle: Duration

    public init(connect: Duration, idle: Duration) {
        self.connect = connect
        self.idle = idle
    }

    public static let `default` = UpstreamTransportTimeouts(connect: .seconds(5), idle: .seconds(30))
}

/// How Wharf reaches its upstreams: two HTTP clients with separate connection pools, and the name
/// resolver the redirect checks use.
///
/// Blob bodies (`GET /v2/<repo>/blobs/…`, possibly streaming for hours) use ``blobs``; manifests,
/// tokens, `HEAD`s and `/v2/` use ``metadata``. A pool full of slow fills therefore never makes a
/// manifest or token request wait for a connection. An upstream configured with other
/// ``UpstreamTransportTimeouts`` than ``timeouts`` gets a pair of its own, made on first use with the
/// same pool sizes and kept here. Create one set per process and ``shutdown()`` it after the servers
/// stopped: that shuts every pair down.
public struct UpstreamHTTPClients: Sendable {
    /// For blob `GET`s (bodies that may stream for hours), with ``timeouts``.
    public let blobs: HTTPClient
    /// For manifests, tokens, `HEAD`s, `/v2/` and everything else, with ``timeouts``.
    public let metadata: HTTPClient
    /// Resolves redirect targets for ``RedirectPolicy``'s address checks.
    public let resolver: any HostResolver
    /// The timeouts ``blobs`` and ``metadata`` were made with.
    public let timeouts: UpstreamTransportTimeouts
    private let poolSizes: (blobs: Int, metadata: Int)?
    private let tuned = TunedClients()

    /// Wraps two existing clients; upstreams with other timeouts than `timeouts` use them too.
    public init(blobs: HTTPClient, metadata: HTTPClient, resolver: any HostResolver = SystemHostResolver(), timeouts: UpstreamTransportTimeouts = .default) {
        self.blobs = blobs
        self.metadata = metadata
        self.resolver = resolver
        self.timeouts = timeouts
        self.poolSizes = nil
    }

    private init(blobConnectionsPerHost: Int, metadataConnectionsPerHost: Int, timeouts: UpstreamTransportTimeouts, resolver: any HostResolver) {
        self.blobs = UpstreamClient.makeHTTPClient(connectionsPerHost: blobConnectionsPerHost, timeouts: timeouts)
        self.metadata = UpstreamClient.makeHTTPClient(connectionsPerHost: metadataConnectionsPerHost, timeouts: timeouts)
        self.resolver = resolver
        self.timeouts = timeouts
        self.poolSizes = (blobConnectionsPerHost, metadataConnectionsPerHost)
    }

    /// Two clients set up by ``UpstreamClient/makeHTTPClient(connectionsPerHost:timeouts:)``.
    public static func make(
        blobConnectionsPerHost: Int = 64, metadataConnectionsPerHost: Int = 32, connectTimeout: TimeAmount = .seconds(5),
        resolver: any HostResolver = SystemHostResolver()
    ) -> UpstreamHTTPClients {
        var timeouts = UpstreamTransportTimeouts.default
        timeouts.connect = .nanoseconds(connectTimeout.nanoseconds)
        return UpstreamHTTPClients(
            blobConnectionsPerHost: blobConnectionsPerHost, metadataConnectionsPerHost: metadataConnectionsPerHost, timeouts: timeouts, resolver: resolver)
    }

    /// The client for a request of `kind` sent with `method` by an upstream with `timeouts`.
    func client(for kind: UpstreamRequestKind, method: HTTPMethod, timeouts: UpstreamTransportTimeouts) -> HTTPClient {
        let blob = kind == .blob && method == .GET
        guard timeouts != self.timeouts, let sizes = self.poolSizes else { return blob ? self.blobs : self.metadata }
        let pair = self.tuned.pair(for: timeouts) {
            (UpstreamClient.makeHTTPClient(connectionsPerHost: sizes.blobs, timeouts: timeouts),
             UpstreamClient.makeHTTPClient(connectionsPerHost: sizes.metadata, timeouts: timeouts))
        }
        return blob ? pair.blobs : pair.metadata
    }

    /// Shuts every client down.
    public func shutdown() async throws {
        var failure: (any Error)?
        var all = self.blobs === self.metadata ? [self.blobs] : [self.blobs, self.metadata]
        all += self.tuned.takeAll()
        for client in all {
            do { try await client.shutdown() } catch { failure = failure ?? error }
        }
        if let failure { throw failure }
    }
}

/// Client pairs for upstreams with their own timeouts, made on first use.
private final class TunedClients: Sendable {
    private let pairs = Mutex<[UpstreamTransportTimeouts: (blobs: HTTPClient, metadata: HTTPClient)]>([:])

    func pair(
        for timeouts: UpstreamTransportTimeouts, make: () -> (HTTPClient, HTTPClient)
    ) -> (blobs: HTTPClient, metadata: HTTPClient) {
        self.pairs.withLock { pairs in
            if let existing = pairs[timeouts] { return existing }
            let made = make()
            pairs[timeouts] = made
            return made
        }
    }

    func takeAll() -> [HTTPClient] {
        self.pairs.withLock { pairs in
            defer { pairs = [:] }
            return pairs.values.flatMap { [$0.blobs, $0.metadata] }
        }
    }
}
