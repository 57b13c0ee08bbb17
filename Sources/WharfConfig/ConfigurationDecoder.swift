import Yams

/// Turns the YAML tree into a ``WharfConfiguration``: keys, types and value syntax. Values that
/// cannot be read keep their defaults; their errors are collected in `reader`.
struct ConfigurationDecoder {
    var reader = NodeReader()

    static let topKeys = ["listen", "data", "client-auth", "limits", "log-level", "log-format", "upstreams", "edge", "webhooks", "warm", "admin"]
    static let listenerKeys = ["address", "tls"]
    static let tlsKeys = ["certificate", "key"]
    static let dataKeys = ["directory", "max-size", "high-watermark", "low-watermark", "memory-cache"]
    static let clientAuthKeys = ["mode", "htpasswd", "allow-without-tls", "realm", "admins"]
    static let adminKeys = ["htpasswd", "token-file", "allow-without-tls"]

    /// Top-level keys that belong in a section, mapped to an explanation.
    static let misplaced: [String: String] = {
        var result: [String: String] = [:]
        let sections = [("data", dataKeys), ("client-auth", clientAuthKeys), ("an entry of 'upstreams'", UpstreamDecoder.keys),
                        ("an entry of 'listen'", listenerKeys), ("limits", limitsKeys), ("edge", DeploymentDecoder.edgeKeys), ("warm", DeploymentDecoder.warmKeys),
                        ("an entry of 'webhooks'", DeploymentDecoder.webhookKeys)]
        for (section, keys) in sections {
            for key in keys where result[key] == nil { result[key] = "'\(key)' is not a top-level key; it belongs in \(section)" }
        }
        return result
    }()

    mutating func decode(_ root: Node?) -> WharfConfiguration {
        var config = WharfConfiguration()
        guard let root else { return config }
        guard let top = self.reader.fields(root, at: "", keys: Self.topKeys, special: Self.misplaced) else { return config }
        if let items = self.reader.items(top, "listen") {
            config.listeners = items.map { self.listener($0.node, at: $0.path) }
        }
        if let node = top.values["data"], let f = self.reader.fields(node, at: "data", keys: Self.dataKeys) {
            self.data(f, into: &config.data)
        }
        if let node = top.values["client-auth"], let f = self.reader.fields(node, at: "client-auth", keys: Self.clientAuthKeys) {
            self.clientAuth(f, into: &config.clientAuth)
        }
        if let node = top.values["limits"], let f = self.reader.fields(node, at: "limits", keys: Self.limitsKeys) {
            self.limits(f, into: &config.limits)
        }
        if let level = self.reader.parsed(top, "log-level", expected: "a log level (\(WharfConfiguration.logLevels.joined(separator: ", ")))", {
            WharfConfiguration.logLevels.contains($0.lowercased()) ? $0.lowercased() : nil
        }) {
            config.logLevel = level
        }
        if let format = self.reader.parsed(top, "log-format", expected: "a log format (\(WharfConfiguration.logFormats.joined(separator: ", ")))", {
            WharfConfiguration.logFormats.contains($0.lowercased()) ? $0.lowercased() : nil
        }) {
            config.logFormat = format
        }
        if let items = self.reader.items(top, "upstreams") {
            var upstreams = UpstreamDecoder(reader: self.reader)
            config.upstreams = upstreams.decode(items)
            self.reader = upstreams.reader
        }
        if let node = top.values["admin"], let f = self.reader.fields(node, at: "admin", keys: Self.adminKeys) {
            var admin = AdminConfiguration()
            admin.htpasswdFile = self.reader.text(f, "htpasswd")
            admin.tokenFile = self.reader.text(f, "token-file")
            admin.allowWithoutTLS = self.reader.bool(f, "allow-without-tls") ?? false
            config.admin = admin
        }
        self.deployment(top, into: &config)
        return config
    }

    /// `edge`, `webhooks` and `warm`.
    private mutating func deployment(_ top: Fields, into config: inout WharfConfiguration) {
        var decoder = DeploymentDecoder(reader: self.reader)
        if let node = top.values["edge"], let f = decoder.reader.fields(node, at: "edge", keys: DeploymentDecoder.edgeKeys) {
            config.edge = decoder.edge(f)
        }
        if let items = decoder.reader.items(top, "webhooks") {
            config.webhooks = decoder.webhooks(items)
        }
        if let node = top.values["warm"], let f = decoder.reader.fields(node, at: "warm", keys: DeploymentDecoder.warmKeys) {
            config.warm = decoder.warm(f, at: node)
        }
        self.reader = decoder.reader
    }

    /// A `listen` entry; an unreadable one becomes a placeholder so later indexes stay aligned.
    private mutating func listener(_ node: Node, at path: String) -> ListenerConfiguration {
        var result = ListenerConfiguration(host: "0.0.0.0", port: 0)
        if case .scalar = node, !NodeReader.isNull(node) {
            self.reader.fail(path, at: node.mark, "expected a mapping with 'address' (and optional 'tls'); write '- address: \"HOST:PORT\"'")
            return result
        }
        guard let f = self.reader.fields(node, at: path, keys: Self.listenerKeys) else { return result }
        self.reader.require(["address"], in: f, at: node) { _ in "missing required key 'address' (HOST:PORT)" }
        if let text = self.reader.text(f, "address") {
            do {
                result = try ListenerConfiguration.parse(address: text)
            } catch {
                self.reader.fail(f.path("address"), at: f.values["address"]?.mark, error.message)
            }
        }
        if let tlsNode = f.values["tls"], let t = self.reader.fields(tlsNode, at: f.path("tls"), keys: Self.tlsKeys) {
            self.reader.require(Self.tlsKeys, in: t, at: tlsNode) {
                "missing required key '\($0)': tls needs both 'certificate' and 'key' (PEM files)"
            }
            result.tls = TLSFiles(certificate: self.reader.text(t, "certificate") ?? "", key: self.reader.text(t, "key") ?? "")
        }
        return result
    }

    private mutating func data(_ f: Fields, into data: inout DataConfiguration) {
        if let directory = self.reader.text(f, "directory") { data.directory = directory }
        if let size = self.reader.parsed(f, "max-size", expected: "a size such as 200GiB, 512MiB, 1TB or plain bytes", ByteSize.parse) {
            data.maxSize = size
        }
        if let high = self.reader.int(f, "high-watermark") { data.highWatermark = high }
        if let low = self.reader.int(f, "low-watermark") { data.lowWatermark = low }
        if let size = self.reader.parsed(f, "memory-cache", expected: "a size such as 64MiB, 256MiB or 0 (off)", ByteSize.parse) {
            data.memoryCache = size
        }
    }

    private mutating func clientAuth(_ f: Fields, into auth: inout ClientAuthConfiguration) {
        let modes = ClientAuthMode.allCases.map(\.rawValue).joined(separator: ", ")
        if let mode = self.reader.parsed(f, "mode", expected: "one of \(modes)", { ClientAuthMode(rawValue: $0.lowercased()) }) {
            auth.mode = mode
        }
        if let file = self.reader.text(f, "htpasswd") { auth.htpasswdFile = file }
        if let allow = self.reader.bool(f, "allow-without-tls") { auth.allowWithoutTLS = allow }
        if let realm = self.reader.text(f, "realm") { auth.realm = realm }
        if let admins = self.reader.strings(f, "admins") { auth.admins = admins }
    }
}
