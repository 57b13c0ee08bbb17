import ArgumentParser
import Foundation
import WharfConfig
import WharfText

/// `wharf config`: tools for the YAML configuration file.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Work with the configuration file.",
        subcommands: [ConfigCheckCommand.self]
    )
}

/// `wharf config check FILE`: loads and validates a configuration file without starting anything.
struct ConfigCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check a configuration file and summarize it.",
        discussion: """
            Prints 'FILE: OK' and a summary and exits 0, or prints every mistake as \
            FILE:LINE:COLUMN: error: MESSAGE (one per line, on stderr) and exits 1. \
            Files the configuration names (certificates, htpasswd, credentials) are not opened.
            """
    )

    @Argument(help: "The YAML configuration file.")
    var file: String

    func run() throws {
        let config: WharfConfiguration
        do {
            config = try ConfigurationLoader.load(path: self.file)
        } catch {
            var text = ""
            for e in error.errors {
                let position = e.line.map { ":\($0):\(e.column ?? 1)" } ?? ""
                let key = e.keyPath.isEmpty ? "" : "\(e.keyPath): "
                text += "\(self.file)\(position): error: \(key)\(e.message)\n"
            }
            FileHandle.standardError.write(Data(text.utf8))
            throw ExitCode(1)
        }
        print("\(self.file): OK")
        for line in Self.summary(config) { print(line) }
    }

    /// Each mistake on a line of its own: `FILE:LINE:COLUMN: key: message`, or `FILE: message`
    /// without a position.
    static func located(_ errors: ConfigurationErrors, in file: String) -> String {
        errors.errors.map { "\(file):" + ($0.line == nil ? " " : "") + $0.description }.joined(separator: "\n")
    }

    /// A few lines: listeners, data directory and bound, client auth, and each upstream's routing.
    static func summary(_ config: WharfConfiguration) -> [String] {
        var lines: [String] = []
        let listeners = config.listeners.map { "\($0.address) (\($0.tls == nil ? "http" : "https"))" }
        lines.append("listeners: " + listeners.joined(separator: ", "))
        let data = config.data
        let bound = data.maxSize.map {
            "max \(ByteCount.string($0)), evicting from \(data.highWatermark)% down to \(data.lowWatermark)%"
        } ?? "unbounded"
        let memory = data.memoryCache > 0 ? "small blobs' responses in up to \(ByteCount.string(data.memoryCache)) of memory" : "no memory cache"
        lines.append("data: \(data.directory) (\(bound); \(memory))")
        let auth = config.clientAuth
        lines.append("client auth: \(auth.mode.rawValue)" + (auth.mode == .htpasswd ? " (\(auth.htpasswdFile ?? ""))" : ""))
        lines.append("log level: \(config.logLevel), format \(config.logFormat)")
        lines.append("upstreams:")
        for upstream in config.upstreams {
            var routes: [String] = []
            if upstream.name == config.defaultUpstream?.name { routes.append("default") }
            if !upstream.namespaces.isEmpty { routes.append("ns " + upstream.namespaces.joined(separator: ", ")) }
            if let prefix = upstream.pathPrefix { routes.append("prefix /v2/\(prefix)/") }
            let duration = { (seconds: Int) in DurationText.string(seconds: seconds) }
            var details = ["tag-ttl \(duration(upstream.tagTTLSeconds))"]
            if upstream.staleWhileRevalidateSeconds > 0 { details.append("stale-while-revalidate \(duration(upstream.staleWhileRevalidateSeconds))") }
            details.append(
                "timeouts: connect \(duration(upstream.connectTimeoutSeconds)), first byte \(duration(upstream.firstByteTimeoutSeconds)), idle \(duration(upstream.idleTimeoutSeconds))")
            switch upstream.credentials {
            case .file(let path): details.append("credentials from \(path)")
            case .environment(let user, let password): details.append("credentials from $\(user)/$\(password)")
            case nil: details.append("anonymous")
            }
            if !upstream.allow.isEmpty || !upstream.deny.isEmpty {
                details.append("\(upstream.allow.count) allow / \(upstream.deny.count) deny patterns")
            }
            if !upstream.pins.isEmpty { details.append("\(upstream.pins.count) pinned") }
            if !upstream.tokenRealms.isEmpty { details.append("credentials also to " + upstream.tokenRealms.joined(separator: ", ")) }
            if upstream.allowPrivateRedirects { details.append("redirects to private addresses allowed") }
            for fallback in upstream.fallbacks {
                let credentials: String
                switch fallback.credentials {
                case .file(let path): credentials = "credentials from \(path)"
                case .environment(let user, let password): credentials = "credentials from $\(user)/$\(password)"
                case nil: credentials = "anonymous"
                }
                details.append("fallback \(fallback.url) (\(credentials))")
            }
            let routing = routes.isEmpty ? "ns of its URL host only" : routes.joined(separator: "; ")
            lines.append("  \(upstream.name): \(upstream.url) [\(routing)] \(details.joined(separator: ", "))")
        }
        if config.edge.isEnabled { lines.append("edge: \(Self.edgeRole(config.edge)), signed URLs valid \(Self.duration(config.edge.ttlSeconds))") }
        for hook in config.webhooks {
            let events = hook.events.map { $0.joined(separator: ", ") } ?? "all events"
            lines.append("webhook: \(hook.url) (\(events)\(hook.secretFile == nil ? ", unsigned" : ", signed"))")
        }
        if let warm = config.warm {
            let platforms = warm.platforms.isEmpty ? "all platforms" : warm.platforms.joined(separator: ", ")
            let rate = warm.maxRate.map { ", at most \(ByteCount.rate($0))" } ?? ""
            lines.append("warm: \(warm.images.count) image(s) every \(Self.duration(warm.everySeconds)) (\(platforms)\(rate))")
        }
        return lines
    }

    /// `6h`, `1h30m`, `45s`: the shape `DurationString` reads.
    static func duration(_ seconds: Int) -> String { DurationText.string(seconds: seconds) }

    /// `off`, `edge → URL`, `cache (signed blobs only)`, or both.
    static func edgeRole(_ edge: EdgeConfiguration) -> String {
        var roles: [String] = []
        if let url = edge.redirectBlobsTo { roles.append("edge → \(url)") }
        if edge.requireSignedBlobs { roles.append("cache (signed blobs only)") }
        return roles.isEmpty ? "off" : roles.joined(separator: " and ")
    }
}
