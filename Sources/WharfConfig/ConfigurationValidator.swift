/// Checks on a whole ``WharfConfiguration`` that hold however it was assembled (file, environment,
/// flags). Errors carry key paths but no positions; the loader adds positions for values from a file.
struct ConfigurationValidator {
    let config: WharfConfiguration
    private(set) var errors: [ConfigurationError] = []

    init(_ config: WharfConfiguration) {
        self.config = config
    }

    mutating func fail(_ keyPath: String, _ message: String) {
        self.errors.append(ConfigurationError(keyPath: keyPath, message: message))
    }

    mutating func run() -> [ConfigurationError] {
        self.listeners()
        self.data()
        self.clientAuth()
        if let admin = self.config.admin, admin.htpasswdFile == nil, admin.tokenFile == nil {
            self.fail("admin", "the admin API needs 'htpasswd: FILE' or 'token-file: FILE' (or remove the section)")
        }
        if !WharfConfiguration.logLevels.contains(self.config.logLevel) {
            self.fail("log-level", "'\(self.config.logLevel)' is not a log level; use one of \(WharfConfiguration.logLevels.joined(separator: ", "))")
        }
        if !WharfConfiguration.logFormats.contains(self.config.logFormat) {
            self.fail("log-format", "'\(self.config.logFormat)' is not a log format; use \(WharfConfiguration.logFormats.joined(separator: " or "))")
        }
        var upstreams = UpstreamValidator(self.config.upstreams)
        self.errors += upstreams.run()
        self.deployment()
        return self.errors
    }

    private mutating func listeners() {
        if self.config.listeners.isEmpty { self.fail("listen", "at least one listener is needed") }
        var seen: [String: Int] = [:]
        for (i, listener) in self.config.listeners.enumerated() {
            let path = "listen[\(i)]"
            if listener.host.isEmpty { self.fail("\(path).address", "the host must not be empty") }
            if !(0...65535).contains(listener.port) { self.fail("\(path).address", "port \(listener.port) is out of range 0-65535") }
            if let first = seen[listener.address], listener.port != 0 {
                self.fail("\(path).address", "\(listener.address) is already used by listen[\(first)]")
            } else {
                seen[listener.address] = i
            }
            if let tls = listener.tls {
                if tls.certificate.isEmpty { self.fail("\(path).tls.certificate", "the certificate file must not be empty") }
                if tls.key.isEmpty { self.fail("\(path).tls.key", "the key file must not be empty") }
            }
        }
    }

    private mutating func data() {
        let data = self.config.data
        if data.directory.isEmpty { self.fail("data.directory", "the data directory must not be empty") }
        if let max = data.maxSize, max <= 0 { self.fail("data.max-size", "max-size must be greater than 0 (leave it out for no bound)") }
        if !(1...100).contains(data.highWatermark) {
            self.fail("data.high-watermark", "high-watermark is a percentage 1-100, got \(data.highWatermark)")
        }
        if !(0...100).contains(data.lowWatermark) {
            self.fail("data.low-watermark", "low-watermark is a percentage 0-99, got \(data.lowWatermark)")
        } else if data.lowWatermark >= data.highWatermark {
            self.fail("data.low-watermark", "low-watermark (\(data.lowWatermark)) must be below high-watermark (\(data.highWatermark))")
        }
    }

    private mutating func clientAuth() {
        let auth = self.config.clientAuth
        if auth.mode == .htpasswd {
            if auth.htpasswdFile == nil {
                self.fail("client-auth.mode", "mode htpasswd needs 'htpasswd: FILE' (an htpasswd file with bcrypt entries)")
            }
        }
        if auth.htpasswdFile?.isEmpty == true { self.fail("client-auth.htpasswd", "the htpasswd file must not be empty") }
        if !auth.admins.isEmpty {
            if auth.mode == .open {
                self.fail("client-auth.admins", "in mode open everyone sees repository names on /stats and /; admins needs mode htpasswd or passthrough")
            } else if auth.htpasswdFile == nil {
                self.fail("client-auth.admins", "admins sign in with the htpasswd file; add 'htpasswd: FILE'")
            }
            if let bad = auth.admins.first(where: { $0.isEmpty || $0.contains(":") }) {
                self.fail("client-auth.admins", "'\(bad)' is not an htpasswd user name (non-empty, no ':')")
            }
        }
        // Plain listeners may run beside a TLS one (health checks, metrics): they refuse the registry API
        // with 403. Without any TLS listener the API would be unusable, unless clear text is allowed.
        if auth.mode != .open, !auth.allowWithoutTLS, !self.config.listeners.contains(where: { $0.tls != nil }),
           let plain = self.config.listeners.first {
            self.fail("client-auth.mode", """
                mode \(auth.mode.rawValue) would receive passwords in clear text on the plain-HTTP listener \(plain.address); \
                add a listener with 'tls', or set 'allow-without-tls: true'
                """)
        }
        if auth.realm.isEmpty || auth.realm.contains(where: { $0 == "\"" || $0 == "\\" || $0.asciiValue.map { $0 < 0x20 } == true }) {
            self.fail("client-auth.realm", "the realm must be non-empty text without quotes, backslashes or control characters")
        }
    }
}
