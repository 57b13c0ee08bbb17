import AsyncHTTPClient
import NIOCore
import NIOHTTP1

/// How Wharf reaches its upstreams: two HTTP clients with separate connection pools, and the name
/// resolver the redirect checks use.
///
/// Blob bodies (`GET /v2/<repo>/blobs/…`, possibly streaming for hours) use ``blobs``; manifests,
/// tokens, `HEAD`s and `/v2/` use ``metadata``. A pool full of slow fills therefore never makes a
/// manifest or token request wait for a connection. Create one set per process and ``shutdown()`` it
/// after the servers stopped.
public struct UpstreamHTTPClients: Sendable {
    /// For blob `GET`s (bodies that may stream for hours).
    public let blobs: HTTPClient
    /// For manifests, tokens, `HEAD`s, `/v2/` and everything else.
    public let metadata: HTTPClient
    /// Resolves redirect targets for ``RedirectPolicy``'s address checks.
    public let resolver: any HostResolver

    public init(blobs: HTTPClient, metadata: HTTPClient, resolver: any HostResolver = SystemHostResolver()) {
        self.blobs = blobs
        self.metadata = metadata
        self.resolver = resolver
    }

    /// Two clients set up by ``UpstreamClient/makeHTTPClient(connectionsPerHost:connectTimeout:)``.
    public static func make(
        blobConnectionsPerHost: Int = 64, metadataConnectionsPerHost: Int = 32, connectTimeout: TimeAmount = .seconds(5),
        resolver: any HostResolver = SystemHostResolver()
    ) -> UpstreamHTTPClients {
        UpstreamHTTPClients(
            blobs: UpstreamClient.makeHTTPClient(connectionsPerHost: blobConnectionsPerHost, connectTimeout: connectTimeout),
            metadata: UpstreamClient.makeHTTPClient(connectionsPerHost: metadataConnectionsPerHost, connectTimeout: connectTimeout),
            resolver: resolver)
    }

    /// The client for a request of `kind` sent with `method`.
    func client(for kind: UpstreamRequestKind, method: HTTPMethod) -> HTTPClient {
        kind == .blob && method == .GET ? self.blobs : self.metadata
    }

    /// Shuts both clients down.
    public func shutdown() async throws {
        var failure: (any Error)?
        for client in self.blobs === self.metadata ? [self.blobs] : [self.blobs, self.metadata] {
            do { try await client.shutdown() } catch { failure = failure ?? error }
        }
        if let failure { throw failure }
    }
}
