import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import WharfAuth
import WharfConfig
import WharfHTTP
import WharfMirror
import WharfStorage
import WharfText
import WharfUpstream

/// The running parts built from a ``WharfConfiguration``: the mirror, one server per listener,
/// client authentication, and what SIGHUP reloads.
struct ServeAssembly: Sendable {
    let mirror: Mirror
    let servers: [RegistryServer]
    let certificates: [TLSCertificate]
    let htpasswd: HtpasswdFile?
    let notifier: Notifier?
    /// The `warm` section's images, interval and platforms (nil: no warm service runs).
    let warmList: WarmList?
    /// The configuration applied last, to tell what a reload changes.
    let applied: AppliedConfiguration

    init(_ config: WharfConfiguration, edge: EdgeSettings? = nil, notifier: Notifier? = nil, httpClients: UpstreamHTTPClients, logger: Logger) throws {
        let upstreams = try Self.mirrorUpstreams(config)
        self.notifier = notifier
        self.warmList = config.warm.map(WarmList.init)
        self.applied = AppliedConfiguration(config)
        let limits = try config.data.maxSize.map {
            try CacheLimits(maxBytes: $0, highWatermarkPercent: config.data.highWatermark, lowWatermarkPercent: config.data.lowWatermark)
        }
        self.mirror = try Mirror(
            dataDirectory: config.data.directory, upstreams: upstreams, httpClients: httpClients, logger: logger, limits: limits, notifier: notifier)

        let auth = config.clientAuth
        self.htpasswd = try auth.htpasswdFile.map { try HtpasswdFile(path: $0, logger: logger) }
        let authenticator = ClientAuthenticator(
            mode: ClientAuthenticator.Mode(rawValue: auth.mode.rawValue) ?? .open, htpasswd: self.htpasswd, realm: auth.realm,
            allowWithoutTLS: auth.allowWithoutTLS, admins: Set(auth.admins), logger: logger)
        var certificates: [TLSCertificate] = []
        self.mirror.lookups.configure(perSecond: Double(config.limits.upstreamLookupsPerSecond), burst: Double(config.limits.upstreamLookupBurst))
        var servers: [RegistryServer] = []
        let admin = try config.admin.map { a in
            AdminAuthenticator(
                htpasswd: try a.htpasswdFile.map { try HtpasswdFile(path: $0, logger: logger) }, token: try a.tokenFile.map(AdminAuthenticator.token(file:)),
                allowWithoutTLS: a.allowWithoutTLS, logger: logger)
        }
        // One for all listeners: a blob's response is the same on each.
        let memoryCache = config.data.memoryCache > 0 ? HitMemoryCache(budget: Int(config.data.memoryCache), mirror: self.mirror) : nil
        for listener in config.listeners {
            var tls: TLSCertificate?
            if let files = listener.tls {
                do { tls = try TLSCertificate(certificatePath: files.certificate, keyPath: files.key) } catch {
                    throw ValidationError("TLS certificate \(files.certificate) / key \(files.key): \(error)")
                }
                certificates.append(tls!)
            }
            var server = RegistryServer.Configuration(host: listener.host, port: listener.port, tls: tls)
            server.connectionLimits = ConnectionLimits(maxTotal: config.limits.connections, maxPerClient: config.limits.connectionsPerClient)
            server.requestHeadTimeout = .seconds(Int64(config.limits.requestHeadTimeoutSeconds))
            server.idleTimeout = .seconds(Int64(config.limits.idleTimeoutSeconds))
            server.admin = admin
            server.memoryCache = memoryCache
            server.about = ServerAbout(configuration: ConfigCheckCommand.summary(config))
            servers.append(RegistryServer(configuration: server, mirror: self.mirror, auth: authenticator, edge: edge, logger: logger))
        }
        self.certificates = certificates
        self.servers = servers
        logger.info("starting wharf", metadata: [
            "version": "\(WharfVersion.description)",
            "listen": "\(config.listeners.map { $0.address + ($0.tls == nil ? "" : " (tls)") }.joined(separator: ", "))",
            "data-dir": "\(config.data.directory)",
            "upstreams": "\(upstreams.map(Self.summary).joined(separator: ", "))",
            "client-auth": "\(auth.mode.rawValue)",
            "cache-limit": "\(limits.map { "max \(ByteCount.string($0.maxBytes)), evict above \($0.highWatermarkPercent)% down to \($0.lowWatermarkPercent)%" } ?? "unbounded")",
            "edge": "\(ConfigCheckCommand.edgeRole(config.edge))",
            "webhooks": "\(config.webhooks.count)",
            "warm": "\(config.warm.map { "\($0.images.count) image(s) every \(ConfigCheckCommand.duration($0.everySeconds))" } ?? "off")",
        ])
    }

    /// `name=url`, whether it has credentials, and its fallbacks, for the start-up line.
    static func summary(_ upstream: MirrorUpstream) -> String {
        let c = upstream.configuration
        var text = "\(c.name)=\(c.url)" + (c.credentials == nil ? "" : " (credentials)")
        if !upstream.fallbacks.isEmpty { text += " (fallbacks: " + upstream.fallbacks.map { $0.url }.joined(separator: ", ") + ")" }
        return text
    }

    /// Re-reads certificates and the htpasswd file; a file that fails keeps the old one in use.
    /// The mirror's upstreams from `config`'s `upstreams`, credentials read.
    static func mirrorUpstreams(_ config: WharfConfiguration) throws -> [MirrorUpstream] {
        try config.upstreams.map { entry in
            var upstream = try UpstreamConfiguration(
                name: entry.name, url: entry.url, credentials: try Self.credentials(entry), tagTTL: .seconds(entry.tagTTLSeconds),
                tokenRealms: entry.tokenRealms, allowPrivateRedirects: entry.allowPrivateRedirects)
            upstream.staleWhileRevalidate = .seconds(entry.staleWhileRevalidateSeconds)
            upstream.connectTimeout = .seconds(entry.connectTimeoutSeconds)
            upstream.firstByteTimeout = .seconds(entry.firstByteTimeoutSeconds)
            upstream.idleTimeout = .seconds(entry.idleTimeoutSeconds)
            upstream.rateLimitReservePercent = entry.rateLimitReservePercent
            let fallbacks = try entry.fallbacks.map {
                UpstreamFallback(
                    url: $0.url, credentials: try Self.credentials($0.credentials, of: "upstream \(entry.name) fallback \($0.url)"),
                    tokenRealms: $0.tokenRealms)
            }
            return MirrorUpstream(
                configuration: upstream,
                namespaces: entry.namespaces, pathPrefix: entry.pathPrefix,
                policy: RepositoryPolicy(allow: entry.allow, deny: entry.deny), pins: entry.pins, isDefault: entry.isDefault,
                fallbacks: fallbacks)
        }
    }

    /// Re-reads the TLS certificates and the htpasswd file.
    func reloadFiles(logger: Logger) {
        for certificate in self.certificates {
            do { try certificate.reload() } catch {
                logger.error("certificate reload failed; keeping the old one", metadata: ["file": "\(certificate.certificatePath)", "error": "\(error)"])
            }
        }
        self.htpasswd?.reload()
    }

    static func credentials(_ entry: UpstreamEntry) throws -> UpstreamCredentials? {
        guard entry.credentials != nil else { return entry.isDefault ? UpstreamCredentials.fromEnvironment() : nil }
        return try Self.credentials(entry.credentials, of: "upstream \(entry.name)")
    }

    /// The credentials `source` names (nil: anonymous); `owner` names the upstream or fallback in errors.
    static func credentials(_ source: CredentialSource?, of owner: String) throws -> UpstreamCredentials? {
        switch source {
        case .file(let path):
            return try UpstreamCredentials.load(file: path)
        case .environment(let userVariable, let passwordVariable):
            let env = ProcessInfo.processInfo.environment
            guard let user = env[userVariable], !user.isEmpty, let password = env[passwordVariable] else {
                throw ValidationError("\(owner): environment variables \(userVariable) and \(passwordVariable) must be set")
            }
            return UpstreamCredentials(username: user, password: password)
        case nil:
            return nil
        }
    }
}
