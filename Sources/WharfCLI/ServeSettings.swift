import ArgumentParser
import WharfConfig
import WharfUpstream

extension ServeCommand {
    /// The configuration to run with: defaults, then the file, then `WHARF_*` variables, then flags;
    /// validated as a whole afterwards.
    func settings(environment env: [String: String]) throws -> WharfConfiguration {
        var config = WharfConfiguration()
        if let path = self.config ?? env["WHARF_CONFIG"].flatMap({ $0.isEmpty ? nil : $0 }) {
            do {
                config = try ConfigurationLoader.load(path: path)
            } catch {
                throw ValidationError(error.errors.map { "\(path):\($0.description)" }.joined(separator: "\n"))
            }
        }
        let fromDefaults = config.upstreams == WharfConfiguration().upstreams
        let value = { (flag: String?, variable: String) -> String? in flag ?? env[variable].flatMap { $0.isEmpty ? nil : $0 } }

        if let listen = value(self.listen, "WHARF_LISTEN") {
            config.listeners.removeAll { $0.tls == nil }
            config.listeners.insert(try Self.listener(listen, flag: "--listen"), at: 0)
        }
        if let address = self.tlsListen {
            guard let certificate = self.tlsCertificate, let key = self.tlsKey else {
                throw ValidationError("--tls-listen needs --tls-cert and --tls-key")
            }
            var tls = try Self.listener(address, flag: "--tls-listen")
            tls.tls = TLSFiles(certificate: certificate, key: key)
            config.listeners.removeAll { $0.tls != nil }
            config.listeners.append(tls)
        } else if self.tlsCertificate != nil || self.tlsKey != nil {
            throw ValidationError("--tls-cert/--tls-key need --tls-listen")
        }
        if let dir = value(self.dataDirectory, "WHARF_DATA_DIR") { config.data.directory = dir }
        if let size = value(self.maxSize, "WHARF_MAX_SIZE") {
            guard let bytes = ByteSize.parse(size) else { throw ValidationError("size '\(size)' must be a number with an optional unit (KiB … TiB, KB … TB)") }
            config.data.maxSize = bytes
        }
        if let high = self.highWatermark { config.data.highWatermark = high }
        if let low = self.lowWatermark { config.data.lowWatermark = low }
        if let mode = value(self.clientAuth, "WHARF_CLIENT_AUTH") {
            guard let parsed = ClientAuthMode(rawValue: mode) else { throw ValidationError("--client-auth must be open, htpasswd or passthrough") }
            config.clientAuth.mode = parsed
        }
        if let file = self.htpasswd { config.clientAuth.htpasswdFile = file }
        if self.allowAuthWithoutTLS { config.clientAuth.allowWithoutTLS = true }
        if let level = value(self.logLevel, "WHARF_LOG_LEVEL") { config.logLevel = level }
        if let format = value(self.logFormat, "WHARF_LOG_FORMAT") { config.logFormat = format.lowercased() }
        try self.mergeDeploymentFlags(into: &config)

        // Flags about "the upstream" apply to the default one.
        guard let d = config.upstreams.firstIndex(where: \.isDefault) ?? (config.upstreams.count == 1 ? 0 : nil) else {
            if self.upstream != nil || self.upstreamCredentials != nil || self.tagTTL != nil || !self.pins.isEmpty || !self.upstreamNamespaces.isEmpty {
                throw ValidationError("--upstream, --upstream-ns, --upstream-credentials, --tag-ttl and --pin need a default upstream in the configuration")
            }
            return try Self.validated(config)
        }
        if let url = value(self.upstream, "WHARF_UPSTREAM") {
            config.upstreams[d].url = url
            // Named after its host when the file did not name it (docker.io for Docker Hub).
            if fromDefaults, let derived = try? WharfUpstream.UpstreamConfiguration(url: url).name {
                config.upstreams[d].name = String(derived.lowercased().map { $0 == ":" ? "-" : $0 })
            }
        }
        if let file = self.upstreamCredentials { config.upstreams[d].credentials = .file(file) }
        if let ttl = self.tagTTL { config.upstreams[d].tagTTLSeconds = ttl }
        config.upstreams[d].pins += self.pins
        config.upstreams[d].namespaces += self.upstreamNamespaces.map { $0.lowercased() }.filter { !config.upstreams[d].namespaces.contains($0) }
        return try Self.validated(config)
    }

    private static func listener(_ address: String, flag: String) throws -> ListenerConfiguration {
        do { return try ListenerConfiguration.parse(address: address) } catch {
            throw ValidationError("\(flag): \(error.message)")
        }
    }

    private static func validated(_ config: WharfConfiguration) throws -> WharfConfiguration {
        let problems = ConfigurationLoader.validate(config)
        guard problems.isEmpty else { throw ValidationError(problems.map(\.description).joined(separator: "\n")) }
        return config
    }
}
