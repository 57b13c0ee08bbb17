/// Checks on the upstream list: names, URLs, routing (default, namespaces, path prefixes),
/// credentials, repository patterns and pins.
struct UpstreamValidator {
    let upstreams: [UpstreamEntry]
    private(set) var errors: [ConfigurationError] = []

    init(_ upstreams: [UpstreamEntry]) {
        self.upstreams = upstreams
    }

    mutating func fail(_ keyPath: String, _ message: String) {
        self.errors.append(ConfigurationError(keyPath: keyPath, message: message))
    }

    mutating func run() -> [ConfigurationError] {
        if self.upstreams.isEmpty { self.fail("upstreams", "at least one upstream is needed") }
        var names: [String: Int] = [:]
        var defaultName: String?
        var namespaces: [String: String] = [:]
        for (i, upstream) in self.upstreams.enumerated() {
            let path = "upstreams[\(i)]"
            if !Syntax.isUpstreamName(upstream.name) {
                self.fail("\(path).name", "'\(upstream.name)' is not a valid name: use lowercase letters, digits and . _ - (starting with a letter or digit)")
            } else if let first = names[upstream.name] {
                self.fail("\(path).name", "duplicate upstream name '\(upstream.name)' (also upstreams[\(first)])")
            } else {
                names[upstream.name] = i
            }
            if let problem = Self.urlProblem(upstream.url) { self.fail("\(path).url", problem) }
            if upstream.isDefault {
                if let first = defaultName {
                    self.fail("\(path).default", "only one upstream can be the default; '\(first)' already is")
                } else {
                    defaultName = upstream.name
                }
            }
            for (j, ns) in upstream.namespaces.enumerated() {
                if !Syntax.isNamespace(ns) {
                    self.fail("\(path).namespaces[\(j)]", "'\(ns)' is not a namespace: use a registry host or host:port, e.g. docker.io")
                } else if let owner = namespaces[ns] {
                    self.fail("\(path).namespaces[\(j)]", "namespace '\(ns)' is already routed to upstream '\(owner)'")
                } else if let owner = self.upstreams[..<i].first(where: { Self.implicitNamespaces($0.url).contains(ns) }) {
                    self.fail("\(path).namespaces[\(j)]", "namespace '\(ns)' is already routed to upstream '\(owner.name)' (its URL host, listed earlier)")
                } else {
                    namespaces[ns] = upstream.name
                }
            }
            self.credentials(upstream.credentials, at: "\(path).credentials")
            if upstream.tagTTLSeconds < 0 { self.fail("\(path).tag-ttl", "tag-ttl must not be negative") }
            if upstream.staleWhileRevalidateSeconds < 0 {
                self.fail("\(path).stale-while-revalidate", "stale-while-revalidate must not be negative")
            }
            for (key, seconds) in [
                ("connect-timeout", upstream.connectTimeoutSeconds), ("first-byte-timeout", upstream.firstByteTimeoutSeconds),
                ("idle-timeout", upstream.idleTimeoutSeconds),
            ] where !(1...3600).contains(seconds) {
                self.fail("\(path).\(key)", "\(key) must be between 1s and 1h")
            }
            for (key, patterns) in [("allow", upstream.allow), ("deny", upstream.deny)] {
                for (j, pattern) in patterns.enumerated() where pattern.isEmpty || pattern.contains(where: \.isWhitespace) {
                    self.fail("\(path).\(key)[\(j)]", "a pattern must be non-empty and without spaces, e.g. library/* or **/internal-*")
                }
            }
            for (j, realm) in upstream.tokenRealms.enumerated() where Self.realmProblem(realm) != nil {
                self.fail("\(path).token-realms[\(j)]", Self.realmProblem(realm)!)
            }
            for (j, pin) in upstream.pins.enumerated() {
                if let problem = Syntax.pinProblem(pin) { self.fail("\(path).pin[\(j)]", "'\(pin)' is not a valid pin: \(problem)") }
            }
            self.fallbacks(of: upstream, at: path)
        }
        self.prefixes()
        return self.errors
    }

    /// Each prefix is well-formed, and none equals or encloses (by whole components) another.
    private mutating func prefixes() {
        var seen: [(index: Int, components: [Substring])] = []
        for (i, upstream) in self.upstreams.enumerated() {
            guard let prefix = upstream.pathPrefix else { continue }
            let components = prefix.split(separator: "/", omittingEmptySubsequences: false)
            guard !prefix.isEmpty, components.allSatisfy(Syntax.isPrefixComponent) else {
                self.fail("upstreams[\(i)].path-prefix", """
                    '\(prefix)' is not a valid path prefix: use one or more '/'-separated components of lowercase \
                    letters and digits, separated by single . _ or -, without leading or trailing '/' (e.g. dockerhub, mirrors/ghcr)
                    """)
                continue
            }
            if let other = seen.first(where: { $0.components.starts(with: components) || components.starts(with: $0.components) }) {
                let otherName = self.upstreams[other.index].name
                let relation = other.components == components ? "is the same as" : "overlaps"
                self.fail("upstreams[\(i)].path-prefix", "path prefix '\(prefix)' \(relation) the prefix of upstream '\(otherName)'")
            }
            seen.append((i, components))
        }
    }

    /// Each fallback's URL, credentials and token realms, checked as the upstream's are; none repeats
    /// the upstream's URL or another fallback's.
    private mutating func fallbacks(of upstream: UpstreamEntry, at path: String) {
        var seen = [Self.origin(upstream.url)]
        for (j, fallback) in upstream.fallbacks.enumerated() {
            let fpath = "\(path).fallbacks[\(j)]"
            if let problem = Self.urlProblem(fallback.url) {
                self.fail("\(fpath).url", problem)
            } else if let first = seen.firstIndex(of: Self.origin(fallback.url)) {
                let other = first == 0 ? "the upstream's own URL" : "fallbacks[\(first - 1)]"
                self.fail("\(fpath).url", "'\(fallback.url)' is the same registry as \(other); a fallback must be another registry")
            }
            seen.append(Self.origin(fallback.url))
            self.credentials(fallback.credentials, at: "\(fpath).credentials")
            for (k, realm) in fallback.tokenRealms.enumerated() where Self.realmProblem(realm) != nil {
                self.fail("\(fpath).token-realms[\(k)]", Self.realmProblem(realm)!)
            }
        }
    }

    /// `scheme://host[:port]` lowercased, without trailing slashes, for comparing registries.
    static func origin(_ url: String) -> String {
        var u = url.lowercased()
        while u.hasSuffix("/") { u.removeLast() }
        return u
    }

    private mutating func credentials(_ source: CredentialSource?, at path: String) {
        switch source {
        case .file(let file) where file.isEmpty:
            self.fail("\(path).file", "the credentials file must not be empty")
        case .environment(let username, let password):
            for (key, name) in [("username-env", username), ("password-env", password)] where !Syntax.isEnvironmentName(name) {
                self.fail("\(path).\(key)", "expected the NAME of an environment variable ([A-Za-z_][A-Za-z0-9_]*), not its value (value not shown)")
            }
        default:
            break
        }
    }

    /// Why `url` is not `http(s)://host[:port]`, or nil.
    static func urlProblem(_ url: String) -> String? {
        let example = "expected http(s)://HOST[:PORT], e.g. https://registry-1.docker.io"
        guard let schemeEnd = url.firstRange(of: "://") else { return "'\(url)' is not a URL; \(example)" }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { return "scheme '\(scheme)' is not supported; \(example)" }
        var rest = url[schemeEnd.upperBound...]
        if rest.contains("@") { return "the URL must not contain credentials (user@); use 'credentials'" }
        if rest.contains("?") || rest.contains("#") { return "the URL must not have a query or fragment; \(example)" }
        if let slash = rest.firstIndex(of: "/") {
            guard rest[slash...].allSatisfy({ $0 == "/" }) else { return "the URL must not have a path (the registry API is at /v2/); \(example)" }
            rest = rest[..<slash]
        }
        var host = rest
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return "'\(url)' has an unclosed IPv6 bracket" }
            let after = host[host.index(after: close)...]
            guard after.isEmpty || Self.isPort(after.dropFirst()) && after.first == ":" else { return "'\(url)' has a bad port; \(example)" }
            return nil
        }
        if let colon = host.lastIndex(of: ":") {
            guard Self.isPort(host[host.index(after: colon)...]) else { return "'\(url)' has a bad port; \(example)" }
            host = host[..<colon]
        }
        guard !host.isEmpty, host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_") }) else {
            return "'\(url)' has no valid host; \(example)"
        }
        return nil
    }

    /// Why `realm` is not an `http(s)://host[:port]` origin (a path is allowed and ignored), or nil.
    static func realmProblem(_ realm: String) -> String? {
        guard let schemeEnd = realm.firstRange(of: "://") else {
            return "'\(realm)' is not a URL; expected the token realm's http(s)://HOST[:PORT], e.g. https://auth.docker.io"
        }
        let origin = realm[..<(realm[schemeEnd.upperBound...].firstIndex(of: "/") ?? realm.endIndex)]
        return self.urlProblem(String(origin)).map { "token realm: \($0)" }
    }

    /// Namespaces an upstream answers without listing them: its URL's host[:port] (and Docker Hub's aliases).
    static func implicitNamespaces(_ url: String) -> Set<String> {
        guard self.urlProblem(url) == nil, let schemeEnd = url.firstRange(of: "://") else { return [] }
        let authority = url[schemeEnd.upperBound...].prefix { $0 != "/" }.lowercased()
        let dockerHub = ["registry-1.docker.io", "docker.io", "index.docker.io", "registry.hub.docker.com"]
        return dockerHub.contains(authority) ? Set(dockerHub).union([authority]) : [authority]
    }

    private static func isPort(_ s: Substring) -> Bool {
        !s.isEmpty && s.count <= 5 && s.allSatisfy { $0.isASCII && $0.isNumber } && Int(s)! <= 65535
    }
}
