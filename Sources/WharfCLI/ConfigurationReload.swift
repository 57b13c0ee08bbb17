import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals
import WharfConfig
import WharfMirror
import WharfStorage

/// The configuration a running server applied last (a reload compares against it).
final class AppliedConfiguration: Sendable {
    private let value: Mutex<WharfConfiguration>
    init(_ config: WharfConfiguration) { self.value = Mutex(config) }
    var current: WharfConfiguration { self.value.withLock { $0 } }
    func replace(_ config: WharfConfiguration) { self.value.withLock { $0 = config } }
}

extension ServeAssembly {
    /// Applies `config` where that is safe while serving: the upstreams (routing, policies, TTLs,
    /// timeouts, credentials, fallbacks, configured pins), webhooks and the warm list; certificates and
    /// htpasswd files are re-read. Listeners, the data folder and its size bound, client
    /// authentication, limits, the edge role, the admin API and logging need a restart: each changed
    /// one is named in the log and the running value stays. Nothing is applied when the new upstreams
    /// cannot be built (a missing credentials file).
    func reload(to config: WharfConfiguration, logger: Logger) {
        self.reloadFiles(logger: logger)
        let before = self.applied.current
        do {
            let (added, changed, removed) = try self.mirror.reconfigure(upstreams: try Self.mirrorUpstreams(config))
            if !(added.isEmpty && changed.isEmpty && removed.isEmpty) {
                logger.notice("reload: upstreams", metadata: [
                    "added": "\(added.joined(separator: ","))", "changed": "\(changed.joined(separator: ","))", "removed": "\(removed.joined(separator: ","))",
                ])
            }
            try self.mirror.index.recordUpstreamNames(config.upstreams.map(\.name))
        } catch {
            logger.error("reload: the upstreams could not be applied; the running ones stay", metadata: ["error": "\(error)"])
            return
        }
        var restart: [String] = []
        if config.webhooks != before.webhooks {
            do {
                let endpoints = try ServeDeployment.endpoints(config.webhooks)
                if self.notifier?.replaceEndpoints(endpoints) != true { restart.append("webhooks") }
            } catch {
                logger.error("reload: webhooks not applied", metadata: ["error": "\(error)"])
            }
        }
        switch (self.warmList, config.warm) {
        case (let list?, let warm?): list.replace(warm)
        case (nil, nil): break
        default: restart.append("warm")  // the warm service starts (or stops) with the process
        }
        let needsRestart: [(String, Bool)] = [
            ("listen", config.listeners != before.listeners), ("data", config.data != before.data),
            ("client-auth", config.clientAuth != before.clientAuth), ("limits", config.limits != before.limits),
            ("edge", config.edge != before.edge), ("admin", config.admin != before.admin),
            ("log-level", config.logLevel != before.logLevel), ("log-format", config.logFormat != before.logFormat),
        ]
        restart += needsRestart.filter(\.1).map(\.0)
        var applied = config
        // What was not applied stays as it runs, so the next reload still sees the difference.
        if restart.contains("listen") { applied.listeners = before.listeners }
        if restart.contains("data") { applied.data = before.data }
        if restart.contains("client-auth") { applied.clientAuth = before.clientAuth }
        if restart.contains("limits") { applied.limits = before.limits }
        if restart.contains("edge") { applied.edge = before.edge }
        if restart.contains("admin") { applied.admin = before.admin }
        if restart.contains("log-level") { applied.logLevel = before.logLevel }
        if restart.contains("log-format") { applied.logFormat = before.logFormat }
        if restart.contains("webhooks") { applied.webhooks = before.webhooks }
        if restart.contains("warm") { applied.warm = before.warm }
        self.applied.replace(applied)
        if !restart.isEmpty {
            logger.warning("reload: these settings changed but take effect only after a restart", metadata: ["keys": "\(restart.joined(separator: ","))"])
        }
        logger.notice("reload: configuration applied", metadata: ["upstreams": "\(config.upstreams.map(\.name).joined(separator: ","))"])
    }
}

/// SIGHUP: re-reads the configuration (file, environment and flags as at start) and applies what can
/// change while serving (``ServeAssembly/reload(to:logger:)``); a file with mistakes is refused whole
/// and logged, and the running configuration stays.
struct ReloadService: Service {
    let assembly: ServeAssembly
    let load: @Sendable () throws -> WharfConfiguration
    let logger: Logger

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                self.logger.notice("SIGHUP: reloading the configuration, certificates and htpasswd files")
                do {
                    self.assembly.reload(to: try self.load(), logger: self.logger)
                } catch {
                    self.assembly.reloadFiles(logger: self.logger)
                    self.logger.error("reload: the configuration has mistakes; nothing else changed", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
