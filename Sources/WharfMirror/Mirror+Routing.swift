import Logging
import Synchronization
import WharfClock
import WharfLogging
import WharfUpstream

/// Building the routes from the configured upstreams, at start and again when the configuration is
/// reloaded (SIGHUP).
extension Mirror {
    /// Routes for `upstreams`. A chain in `reusing` under the same name whose settings did not change is
    /// kept as it is (its breakers, tokens and pull budget go on); every other upstream gets new clients.
    static func routes(
        _ upstreams: [MirrorUpstream], reusing: [String: (key: String, chain: UpstreamChain)], httpClients: UpstreamHTTPClients,
        notifier: Notifier, logger: Logger, clock: WharfClock
    ) throws -> (router: UpstreamRouter, pins: [(upstream: String, images: PinnedImages)]) {
        var routes: [UpstreamRoute] = []
        var pins: [(upstream: String, images: PinnedImages)] = []
        for u in upstreams {
            let name = u.configuration.name
            let chain: (client: UpstreamClient, fallbacks: [UpstreamClient])
            if let kept = reusing[name], kept.key == Self.reloadKey(u) {
                chain = (kept.chain.primary, kept.chain.fallbacks.map(\.client))
            } else {
                let client = UpstreamClient(configuration: u.configuration, httpClients: httpClients, logger: logger, clock: clock)
                Self.logReachability(of: client, name: name, notifier: notifier, logger: logger)
                let fallbacks = try u.fallbacks.map {
                    UpstreamClient(configuration: try u.configuration.fallback($0), httpClients: httpClients, logger: logger, clock: clock)
                }
                chain = (client, fallbacks)
            }
            routes.append(UpstreamRoute(client: chain.client, fallbacks: chain.fallbacks, namespaces: u.namespaces, pathPrefix: u.pathPrefix, policy: u.policy))
            if !u.pins.isEmpty { pins.append((name, try PinnedImages(u.pins, dockerHub: u.configuration.isDockerHub))) }
        }
        let defaultIndex = upstreams.firstIndex(where: \.isDefault) ?? (upstreams.count == 1 ? 0 : nil)
        return (UpstreamRouter(routes: routes, defaultRoute: defaultIndex.map { routes[$0] }), pins)
    }

    /// What must be equal for a reload to keep an upstream's clients: everything its clients were made with.
    static func reloadKey(_ u: MirrorUpstream) -> String {
        ([u.configuration.reloadKey] + u.fallbacks.map(\.reloadKey)).joined(separator: "\u{0}")
    }

    /// Logs (and notifies) an upstream going down with its cause, and coming back.
    static func logReachability(of client: UpstreamClient, name: String, notifier: Notifier, logger: Logger) {
        let downSince = Mutex<ContinuousClock.Instant?>(nil)
        client.observeReachability { up, reason in
            if up {
                let since = downSince.withLock { d in defer { d = nil }; return d }
                var metadata: Logger.Metadata = ["upstream": .string(name), "reason": .string(reason ?? "answering again")]
                if let since { metadata["down_ms"] = LogValue.milliseconds(ContinuousClock.now - since) }
                logger.notice("upstream up", metadata: metadata)
            } else {
                downSince.withLock { $0 = $0 ?? .now }
                logger.warning("upstream down", metadata: ["upstream": .string(name), "reason": .string(reason ?? "unreachable")])
            }
            notifier.emit(up ? .upstreamUp(upstream: name) : .upstreamDown(upstream: name, reason: reason ?? "unreachable"))
        }
    }

    /// Replaces the upstreams (routing, policies, TTLs, timeouts, fallbacks, configured pins) with
    /// `upstreams`, keeping the clients of those that did not change. Requests already routed finish
    /// with what they had. Returns the names added, changed and removed.
    public func reconfigure(upstreams: [MirrorUpstream]) throws -> (added: [String], changed: [String], removed: [String]) {
        precondition(!upstreams.isEmpty, "a mirror needs at least one upstream")
        let current = self.router.routes
        let previous = Dictionary(current.map { ($0.client.configuration.name, $0) }, uniquingKeysWith: { a, _ in a })
        let keys = Dictionary(self.reloadKeys.withLock { $0 }, uniquingKeysWith: { a, _ in a })
        var reusing: [String: (key: String, chain: UpstreamChain)] = [:]
        for (name, route) in previous { if let key = keys[name] { reusing[name] = (key, route.chain) } }
        let (router, pins) = try Self.routes(
            upstreams, reusing: reusing, httpClients: self.httpClients, notifier: self.notifier, logger: self.logger, clock: self.clock)
        let names = upstreams.map(\.configuration.name)
        let added = names.filter { previous[$0] == nil }
        let changed = names.filter { name in
            guard let old = previous[name], let new = router.routes.first(where: { $0.client.configuration.name == name }) else { return false }
            return old.client !== new.client || old.namespaces != new.namespaces || old.pathPrefix != new.pathPrefix
                || "\(old.policy)" != "\(new.policy)"
        }
        let removed = previous.keys.filter { !names.contains($0) }.sorted()
        self.routing.withLock { $0 = router }
        self.reloadKeys.withLock { $0 = upstreams.map { ($0.configuration.name, Self.reloadKey($0)) } }
        self.pins.setConfigured(pins, dockerHub: Dictionary(upstreams.map { ($0.configuration.name, $0.configuration.isDockerHub) }, uniquingKeysWith: { a, _ in a }))
        return (added, changed, removed)
    }
}
