import OCIDistribution
import WharfUpstream

/// One configured upstream and how requests reach it.
public struct UpstreamRoute: Sendable {
    /// The upstream and its fallbacks: manifests and blobs are asked of it.
    public let chain: UpstreamChain
    /// The upstream itself (the primary): routing, policy, tag lists, referrers and pass-through
    /// authorization use it alone.
    public var client: UpstreamClient { self.chain.primary }
    /// Values of containerd's `ns` query parameter served by this upstream (e.g. `docker.io`, `ghcr.io`).
    public let namespaces: Set<String>
    /// First path component(s) that select this upstream: `/v2/<prefix>/<repo>/…` (podman mirrors, Docker ≥ 25 path mirrors).
    public let pathPrefix: String?
    public let policy: RepositoryPolicy

    public init(
        client: UpstreamClient, fallbacks: [UpstreamClient] = [], namespaces: [String] = [], pathPrefix: String? = nil,
        policy: RepositoryPolicy = RepositoryPolicy()
    ) {
        self.chain = UpstreamChain(primary: client, fallbacks: fallbacks)
        var ns = Set(namespaces.map { $0.lowercased() })
        ns.insert(client.configuration.hostAndPort.lowercased())
        if client.configuration.isDockerHub { ns.formUnion(["docker.io", "registry-1.docker.io", "index.docker.io"]) }
        self.namespaces = ns
        self.pathPrefix = pathPrefix.map { $0.split(separator: "/").joined(separator: "/") }.flatMap { $0.isEmpty ? nil : $0 }
        self.policy = policy
    }
}

/// Where a request goes: the upstream, the repository name there, and the namespace to echo.
public struct RoutedRequest: Sendable {
    public let route: UpstreamRoute
    public let repository: String
    /// Set when the request was routed by `ns`: echoed as `OCI-Namespace`.
    public let namespace: String?
    public var client: UpstreamClient { self.route.client }
    /// The upstream and its fallbacks.
    public var chain: UpstreamChain { self.route.chain }
}

/// Picks the upstream for a request: containerd's `ns` first, then a path prefix, then the default.
public final class UpstreamRouter: Sendable {
    public let routes: [UpstreamRoute]
    public let defaultRoute: UpstreamRoute?

    public init(routes: [UpstreamRoute], defaultRoute: UpstreamRoute?) {
        self.routes = routes
        self.defaultRoute = defaultRoute
    }

    public func route(_ name: RepositoryName, namespace: String?) throws(RegistryError) -> RoutedRequest {
        if let ns = namespace?.lowercased(), !ns.isEmpty {
            guard let route = self.routes.first(where: { $0.namespaces.contains(ns) }) else {
                // Unknown registry: let containerd move on to its next host rather than serve wrong content.
                throw RegistryError(.nameUnknown, "this mirror has no upstream for namespace \(ns.prefix(255))")
            }
            return try self.finish(route, name, namespace: ns)
        }
        for route in self.routes {
            guard let prefix = route.pathPrefix else { continue }
            let depth = prefix.split(separator: "/").count
            guard name.value.hasPrefix(prefix + "/"), let rest = name.droppingPrefix(components: depth) else { continue }
            return try self.finish(route, rest, namespace: nil)
        }
        guard let route = self.defaultRoute else {
            throw RegistryError(.nameUnknown, "no upstream serves \(name): use a configured path prefix or ns")
        }
        return try self.finish(route, name, namespace: nil)
    }

    private func finish(_ route: UpstreamRoute, _ name: RepositoryName, namespace: String?) throws(RegistryError) -> RoutedRequest {
        let repository = route.client.configuration.isDockerHub ? name.dockerHubNormalized.value : name.value
        if let denied = route.policy.check(repository, upstream: route.client.configuration.name) { throw denied }
        return RoutedRequest(route: route, repository: repository, namespace: namespace)
    }
}
