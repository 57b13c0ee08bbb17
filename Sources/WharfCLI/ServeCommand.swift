import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import WharfAuth
import WharfConfig
import WharfHTTP
import WharfLogging
import WharfMirror
import WharfStorage
import WharfUpstream

/// `wharf serve`: runs the mirror in the foreground until SIGTERM/SIGINT; SIGHUP reloads TLS
/// certificates and the htpasswd file.
///
/// Settings come from, in rising priority: built-in defaults, the YAML file (`--config`), `WHARF_*`
/// environment variables, and flags.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run the mirror in the foreground.")

    @Option(help: "YAML configuration file (see docs/configuration.md). Also WHARF_CONFIG.")
    var config: String?

    @Option(help: "Plain-HTTP address to listen on, HOST:PORT (replaces the file's plain listeners). Default 0.0.0.0:5000.")
    var listen: String?

    @Option(name: .customLong("tls-listen"), help: "HTTPS address, HOST:PORT; needs --tls-cert and --tls-key.")
    var tlsListen: String?

    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain for --tls-listen.")
    var tlsCertificate: String?

    @Option(name: .customLong("tls-key"), help: "PEM private key for --tls-listen.")
    var tlsKey: String?

    @Option(help: "URL of the default upstream registry, http(s)://HOST[:PORT]. Default Docker Hub. Also WHARF_UPSTREAM.")
    var upstream: String?

    @Option(name: .customLong("upstream-name"), help: """
        Name of the default upstream (the index keeps its tags under it; wharf import --upstream takes it). \
        Default: 'default' with --upstream URL, 'dockerhub' for the built-in Docker Hub, the file's name with --config. Also WHARF_UPSTREAM_NAME.
        """)
    var upstreamName: String?

    @Option(name: .customLong("data-dir"), help: "Cache folder (blobs, tmp, LMDB index). Default ./data.")
    var dataDirectory: String?

    @Option(name: .customLong("max-size"), help: "Cache size bound, e.g. 200GiB; least recently used blobs are evicted past it.")
    var maxSize: String?

    @Option(name: .customLong("high-watermark"), help: "Start evicting past this percentage of --max-size (default 90).")
    var highWatermark: Int?

    @Option(name: .customLong("low-watermark"), help: "Evict down to this percentage of --max-size (default 80).")
    var lowWatermark: Int?

    @Option(name: .customLong("upstream-ns"), help: "containerd 'ns' value also routed to the default upstream, e.g. docker.io (repeatable).")
    var upstreamNamespaces: [String] = []

    @Option(name: .customLong("upstream-credentials"), help: "File holding 'user:password' for the default upstream.")
    var upstreamCredentials: String?

    @Option(name: .customLong("pin"), help: "Image of the default upstream never evicted, REPO[:TAG] or REPO@DIGEST (repeatable).")
    var pins: [String] = []

    @Option(name: .customLong("tag-ttl"), help: "How long a tag answer of the default upstream is served without asking it: 300, 90s, 5m, 1h30m (default 5m).")
    var tagTTL: String?

    @Option(name: .customLong("client-auth"), help: "open, htpasswd or passthrough.")
    var clientAuth: String?

    @Option(help: "htpasswd file (bcrypt entries) for --client-auth htpasswd.")
    var htpasswd: String?

    @Flag(name: .customLong("allow-auth-without-tls"), help: "Accept client credentials on plain-HTTP listeners too.")
    var allowAuthWithoutTLS = false

    @Option(name: .customLong("edge-redirect"), help: "Edge mode: answer blob GETs with a signed 307 to this cache base URL.")
    var edgeRedirect: String?

    @Flag(name: .customLong("require-signed-blobs"), help: "Cache mode: serve blobs only through signed URLs from an edge.")
    var requireSignedBlobs = false

    @Option(name: .customLong("edge-secret"), help: "File with the secret (≥ 16 bytes) shared by edge and caches.")
    var edgeSecret: String?

    @Option(name: .customLong("edge-ttl"), help: "How long a signed blob URL stays valid: 60, 90s, 5m (default 60s).")
    var edgeTTL: String?

    @Option(name: .customLong("webhook"), help: "URL that receives event notifications as JSON POSTs (repeatable).")
    var webhooks: [String] = []

    @Option(name: .customLong("webhook-secret"), help: "File with the secret that signs webhook bodies (X-Wharf-Signature).")
    var webhookSecret: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.")
    var logLevel: String?

    @Option(name: .customLong("log-format"), help: "text (logfmt) or json: one line per event on stderr.")
    var logFormat: String?

    /// Flag and file mistakes are reported before anything starts, naming the flag (or the file).
    func validate() throws {
        _ = try self.settings(environment: ProcessInfo.processInfo.environment)
    }

    func run() async throws {
        let settings = try self.settings(environment: ProcessInfo.processInfo.environment)
        let level = Logger.Level(rawValue: settings.logLevel) ?? .info
        let format = LogFormat(rawValue: settings.logFormat) ?? .text
        LoggingSystem.bootstrap { _ in WharfLogHandler(format: format, level: level) }
        let logger = Logger(label: "wharf")
        Self.raiseOpenFilesLimit()
        // Before the data folder is created or locked: a listen address that cannot be bound (in use,
        // a privileged port, not this machine's) stops the start with nothing left behind.
        try ListenPreflight.check(settings.listeners)
        // One writer per data folder: a second server, import or gc on it is refused while this runs.
        let lock = try DataDirectoryLock(directory: CacheLayout(root: settings.data.directory).root, create: true)
        defer { lock.release() }
        let http = UpstreamHTTPClients.make()
        let assembly: ServeAssembly
        do {
            let notifier = try ServeDeployment.notifier(settings.webhooks, httpClient: http.metadata, logger: logger)
            let edge = try ServeDeployment.edgeSettings(settings.edge)
            assembly = try ServeAssembly(settings, edge: edge, notifier: notifier, httpClients: http, logger: logger)
            // What `wharf import` checks its --upstream against.
            try assembly.mirror.index.recordUpstreamNames(settings.upstreams.map(\.name))
        } catch {
            try? await http.shutdown()
            // A file that cannot be read (certificate, credentials, secret) is no usage mistake: no usage text.
            throw (error as? ValidationError).map { CommandError($0.message) } ?? error
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = assembly.servers.map { .init(service: $0) }
        services.append(.init(service: MaintenanceService(mirror: assembly.mirror, server: assembly.servers[0])))
        let command = self
        services.append(.init(service: ReloadService(
            assembly: assembly, load: { try command.settings(environment: ProcessInfo.processInfo.environment) }, logger: logger)))
        services.append(.init(
            service: SystemdService(notifier: SystemdNotifier(), servers: assembly.servers, mirror: assembly.mirror, logger: logger),
            successTerminationBehavior: .ignore))
        if let warm = settings.warm {
            services.append(.init(service: WarmService(assembly.warmList ?? WarmList(warm), mirror: assembly.mirror, server: assembly.servers[0], logger: logger)))
        }
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}

extension ServeCommand {
    /// Raises the soft open-files limit to the hard one, as nginx's `worker_rlimit_nofile` or Go's
    /// runtime do: connections and the open-file cache of hits both need descriptors.
    static func raiseOpenFilesLimit() {
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(resource, &limit)
    }
}

/// Background upkeep as a service, started once the server listens: the index ↔ disk check,
/// eviction, and batched last-access writes.
struct MaintenanceService: Service {
    let mirror: Mirror
    let server: RegistryServer
    func run() async throws {
        _ = try await self.server.boundPort()
        await cancelWhenGracefulShutdown { await self.mirror.runMaintenance() }
    }
}
