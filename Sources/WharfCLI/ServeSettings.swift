import ArgumentParser
import WharfConfig
import WharfUpstream

extension ServeCommand {
    /// The configuration to run with: defaults, then the file, then `WHARF_*` variables, then flags;
    /// validated as a whole afterwards.
    ///
    /// A mistake is reported under what set the value: the flag (`--upstream: …`), the variable
    /// (`WHARF_UPSTREAM: …`), or the file and key (`wharf.yaml: upstreams[0].url: …`).
    func settings(environment env: [String: String]) throws -> WharfConfiguration {
        var config = WharfConfiguration()
        var origins = SettingOrigins()
        if let path = self.config ?? env["WHARF_CONFIG"].flatMap({ $0.isEmpty ? nil : $0 }) {
            do {
                config = try ConfigurationLoader.load(path: path)
            } catch {
                throw ValidationError(ConfigCheckCommand.located(error, in: path))
            }
            origins.file = path
        }
        let fromDefaults = config.upstreams == WharfConfiguration().upstreams
        /// The flag's value, else the variable's (non-empty), with the name of whichever gave it.
        func value(_ flag: String?, _ flagName: String, _ variable: String?) -> (text: String, origin: String)? {
            if let flag { return (flag, flagName) }
            guard let variable, let text = env[variable], !text.isEmpty else { return nil }
            return (text, variable)
        }

        if let (listen, origin) = value(self.listen, "--listen", "WHARF_LISTEN") {
            config.listeners.removeAll { $0.tls == nil }
            config.listeners.insert(try Self.listener(listen, origin: origin), at: 0)
            origins.shift("listen", from: 0)
            origins["listen[0]"] = origin
        }
        if let address = self.tlsListen {
            guard let certificate = self.tlsCertificate, let key = self.tlsKey else {
                throw ValidationError("--tls-listen needs --tls-cert and --tls-key")
            }
            var tls = try Self.listener(address, origin: "--tls-listen")
            tls.tls = TLSFiles(certificate: certificate, key: key)
            config.listeners.removeAll { $0.tls != nil }
            config.listeners.append(tls)
            let i = config.listeners.count - 1
            origins["listen[\(i)]"] = "--tls-listen"
            origins["listen[\(i)].tls.certificate"] = "--tls-cert"
            origins["listen[\(i)].tls.key"] = "--tls-key"
        } else if self.tlsCertificate != nil || self.tlsKey != nil {
            throw ValidationError("--tls-cert/--tls-key need --tls-listen")
        }
        if let (dir, origin) = value(self.dataDirectory, "--data-dir", "WHARF_DATA_DIR") {
            config.data.directory = dir
            origins["data.directory"] = origin
        }
        if let (size, origin) = value(self.maxSize, "--max-size", "WHARF_MAX_SIZE") {
            config.data.maxSize = try Self.parse(size, origin: origin, CommandLineValues.bytes)
            origins["data.max-size"] = origin
        }
        if let high = self.highWatermark {
            config.data.highWatermark = high
            origins["data.high-watermark"] = "--high-watermark"
        }
        if let low = self.lowWatermark {
            config.data.lowWatermark = low
            origins["data.low-watermark"] = "--low-watermark"
        }
        if let (mode, origin) = value(self.clientAuth, "--client-auth", "WHARF_CLIENT_AUTH") {
            guard let parsed = ClientAuthMode(rawValue: mode) else { throw ValidationError("\(origin): '\(mode)' is not a mode; use open, htpasswd or passthrough") }
            config.clientAuth.mode = parsed
            origins["client-auth.mode"] = origin
        }
        if let file = self.htpasswd {
            config.clientAuth.htpasswdFile = file
            origins["client-auth.htpasswd"] = "--htpasswd"
        }
        if self.allowAuthWithoutTLS { config.clientAuth.allowWithoutTLS = true }
        if let (level, origin) = value(self.logLevel, "--log-level", "WHARF_LOG_LEVEL") {
            config.logLevel = level
            origins["log-level"] = origin
        }
        if let (format, origin) = value(self.logFormat, "--log-format", "WHARF_LOG_FORMAT") {
            config.logFormat = format.lowercased()
            origins["log-format"] = origin
        }
        try self.mergeDeploymentFlags(into: &config, origins: &origins)

        // Flags about "the upstream" apply to the default one.
        let upstreamName = value(self.upstreamName, "--upstream-name", "WHARF_UPSTREAM_NAME")
        guard let d = config.upstreams.firstIndex(where: \.isDefault) ?? (config.upstreams.count == 1 ? 0 : nil) else {
            if self.upstream != nil || upstreamName != nil || self.upstreamCredentials != nil || self.tagTTL != nil || !self.pins.isEmpty
                || !self.upstreamNamespaces.isEmpty {
                throw ValidationError("""
                    --upstream, --upstream-name, --upstream-ns, --upstream-credentials, --tag-ttl and --pin apply to the default upstream, \
                    and \(origins.file ?? "the configuration") has none: mark one upstream 'default: true'
                    """)
            }
            return try Self.validated(config, origins: origins)
        }
        let at = "upstreams[\(d)]"
        if let (url, origin) = value(self.upstream, "--upstream", "WHARF_UPSTREAM") {
            config.upstreams[d].url = url
            origins["\(at).url"] = origin
            // An upstream given only by its URL is named `default`: predictable for `wharf import
            // --upstream`, and the same whichever URL it is. A file's upstream keeps its name.
            if fromDefaults { config.upstreams[d].name = "default" }
        }
        if let (name, origin) = upstreamName {
            config.upstreams[d].name = name
            origins["\(at).name"] = origin
        }
        if let file = self.upstreamCredentials {
            config.upstreams[d].credentials = .file(file)
            origins["\(at).credentials"] = "--upstream-credentials"
        }
        if let ttl = self.tagTTL {
            config.upstreams[d].tagTTLSeconds = try Self.parse(ttl, origin: "--tag-ttl", CommandLineValues.seconds)
            origins["\(at).tag-ttl"] = "--tag-ttl"
        }
        let pinned = config.upstreams[d].pins.count
        config.upstreams[d].pins += self.pins
        for j in pinned..<config.upstreams[d].pins.count { origins["\(at).pin[\(j)]"] = "--pin" }
        let routed = config.upstreams[d].namespaces.count
        config.upstreams[d].namespaces += self.upstreamNamespaces.map { $0.lowercased() }.filter { !config.upstreams[d].namespaces.contains($0) }
        for j in routed..<config.upstreams[d].namespaces.count { origins["\(at).namespaces[\(j)]"] = "--upstream-ns" }
        return try Self.validated(config, origins: origins)
    }

    private static func listener(_ address: String, origin: String) throws -> ListenerConfiguration {
        do { return try ListenerConfiguration.parse(address: address) } catch {
            throw ValidationError("\(origin): \(error.message)")
        }
    }

    /// `text` read by `parse`, or a mistake naming `origin` (a flag or a variable).
    static func parse<T>(_ text: String, origin: String, _ parse: (String) throws(ValueProblem) -> T) throws -> T {
        do { return try parse(text) } catch { throw ValidationError("\(origin): \(error)") }
    }

    private static func validated(_ config: WharfConfiguration, origins: SettingOrigins) throws -> WharfConfiguration {
        let problems = ConfigurationLoader.validate(config)
        guard problems.isEmpty else { throw ValidationError(problems.map { origins.explain($0) }.joined(separator: "\n")) }
        return config
    }
}

/// Which flag or environment variable set each configuration key that did not come from the file,
/// so a mistake in the merged configuration is reported in the words the user typed.
struct SettingOrigins {
    /// The configuration file, if one was read.
    var file: String?
    /// Key path (`upstreams[0].url`, `listen[0]`) → `--upstream`, `WHARF_UPSTREAM`, …
    private var byKeyPath: [String: String] = [:]

    subscript(keyPath: String) -> String? {
        get { self.byKeyPath[keyPath] }
        set { self.byKeyPath[keyPath] = newValue }
    }

    /// Moves recorded origins of `list[i]` with `i ≥ from` one place down (an entry was inserted).
    mutating func shift(_ list: String, from index: Int) {
        var moved: [String: String] = [:]
        for (path, origin) in self.byKeyPath {
            guard path.hasPrefix(list + "["), let close = path.firstIndex(of: "]"),
                  let i = Int(path[path.index(path.startIndex, offsetBy: list.count + 1)..<close]), i >= index
            else {
                moved[path] = origin
                continue
            }
            moved["\(list)[\(i + 1)]" + path[path.index(after: close)...]] = origin
        }
        self.byKeyPath = moved
    }

    /// `--flag: message` when a flag or variable set the key (or the entry around it), else
    /// `FILE: key: message`, else `key: message`.
    func explain(_ error: WharfConfig.ConfigurationError) -> String {
        var path = Substring(error.keyPath)
        while !path.isEmpty {
            if let origin = self.byKeyPath[String(path)] { return "\(origin): \(error.message)" }
            path = path[..<(path.lastIndex(where: { $0 == "." || $0 == "[" }) ?? path.startIndex)]
        }
        return (self.file.map { "\($0): " } ?? "") + error.description
    }
}
