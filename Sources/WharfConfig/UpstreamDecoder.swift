import Yams

/// Reads the `upstreams` list, including `credentials` (which must never hold secrets inline).
struct UpstreamDecoder {
    var reader: NodeReader

    static let keys = [
        "name", "url", "default", "namespaces", "path-prefix", "credentials", "tag-ttl", "stale-while-revalidate", "allow", "deny", "pin", "token-realms",
        "allow-private-redirects", "connect-timeout", "first-byte-timeout", "idle-timeout", "rate-limit-reserve", "fallbacks",
    ]
    static let fallbackKeys = ["url", "credentials", "token-realms"]
    static let credentialKeys = ["file", "username-env", "password-env"]
    static let inlineSecret = """
        inline credentials are not allowed (the file would hold a secret); put 'user:password' in a file \
        and set 'file: PATH', or name environment variables with 'username-env' and 'password-env'
        """

    mutating func decode(_ items: [(path: String, node: Node)]) -> [UpstreamEntry] {
        var entries = items.map { self.entry($0.node, at: $0.path) }
        if entries.count == 1, !items.contains(where: { Self.hasKey($0.node, "default") }) {
            entries[0].isDefault = true
        }
        return entries
    }

    private static func hasKey(_ node: Node, _ key: String) -> Bool {
        guard case .mapping(let mapping) = node, let value = mapping[key] else { return false }
        return !NodeReader.isNull(value)
    }

    /// One entry; an unreadable one becomes a placeholder so later indexes stay aligned.
    private mutating func entry(_ node: Node, at path: String) -> UpstreamEntry {
        var entry = UpstreamEntry(name: "", url: "")
        guard let f = self.reader.fields(node, at: path, keys: Self.keys) else { return entry }
        self.reader.require(["name", "url"], in: f, at: node) { "missing required key '\($0)'" }
        entry.name = self.reader.text(f, "name") ?? ""
        entry.url = self.reader.text(f, "url") ?? ""
        entry.isDefault = self.reader.bool(f, "default") ?? false
        entry.namespaces = self.reader.strings(f, "namespaces")?.map { $0.lowercased() } ?? []
        entry.pathPrefix = self.reader.text(f, "path-prefix")
        if let credentials = f.values["credentials"] {
            entry.credentials = self.credentials(credentials, at: f.path("credentials"))
        }
        let durations = "a duration such as 300, 90s, 5m, 1h or 1h30m"
        entry.tagTTLSeconds = self.reader.parsed(f, "tag-ttl", expected: durations, DurationString.seconds) ?? entry.tagTTLSeconds
        entry.staleWhileRevalidateSeconds =
            self.reader.parsed(f, "stale-while-revalidate", expected: durations, DurationString.seconds) ?? entry.staleWhileRevalidateSeconds
        entry.connectTimeoutSeconds = self.reader.parsed(f, "connect-timeout", expected: durations, DurationString.seconds) ?? entry.connectTimeoutSeconds
        entry.firstByteTimeoutSeconds =
            self.reader.parsed(f, "first-byte-timeout", expected: durations, DurationString.seconds) ?? entry.firstByteTimeoutSeconds
        entry.idleTimeoutSeconds = self.reader.parsed(f, "idle-timeout", expected: durations, DurationString.seconds) ?? entry.idleTimeoutSeconds
        if let reserve = self.reader.parsed(f, "rate-limit-reserve", expected: "a percentage such as 10%", { Self.percent($0) }) {
            entry.rateLimitReservePercent = reserve
        }
        entry.allow = self.reader.strings(f, "allow") ?? []
        entry.deny = self.reader.strings(f, "deny") ?? []
        entry.pins = self.reader.strings(f, "pin") ?? []
        entry.tokenRealms = self.reader.strings(f, "token-realms") ?? []
        entry.allowPrivateRedirects = self.reader.bool(f, "allow-private-redirects") ?? false
        entry.fallbacks = self.reader.items(f, "fallbacks")?.compactMap { self.fallback($0.node, at: $0.path) } ?? []
        return entry
    }

    /// One fallback: a mapping with `url` (and optional `credentials`, `token-realms`), or just the URL.
    private mutating func fallback(_ node: Node, at path: String) -> FallbackEntry? {
        if case .scalar(let s) = node, !NodeReader.isNull(node) { return FallbackEntry(url: s.string) }
        if NodeReader.isNull(node) {
            self.reader.fail(path, at: node.mark, "expected a fallback (url: https://HOST[:PORT], or just the URL), got an empty item")
            return nil
        }
        let inherited = Dictionary(uniqueKeysWithValues: Self.keys.filter { !Self.fallbackKeys.contains($0) }.map {
            ($0, "'\($0)' cannot be set on a fallback: a fallback has only url, credentials and token-realms, and inherits the rest from its upstream")
        })
        guard let f = self.reader.fields(node, at: path, keys: Self.fallbackKeys, special: inherited) else { return nil }
        self.reader.require(["url"], in: f, at: node) { "missing required key '\($0)'" }
        var entry = FallbackEntry(url: self.reader.text(f, "url") ?? "")
        if let credentials = f.values["credentials"] {
            entry.credentials = self.credentials(credentials, at: f.path("credentials"))
        }
        entry.tokenRealms = self.reader.strings(f, "token-realms") ?? []
        return entry
    }

    /// `10%` or `10` → 10; 0 to 100.
    static func percent(_ text: String) -> Int? {
        let digits = text.hasSuffix("%") ? String(text.dropLast()) : text
        guard digits.count <= 3, let value = Int(digits), (0...100).contains(value) else { return nil }
        return value
    }

    /// `file: PATH` or `username-env` + `password-env`. Values are never echoed in errors.
    private mutating func credentials(_ node: Node, at path: String) -> CredentialSource? {
        let special = ["username": Self.inlineSecret, "password": Self.inlineSecret, "user": Self.inlineSecret, "token": Self.inlineSecret]
        if case .scalar = node {
            self.reader.fail(path, at: node.mark, "expected a mapping with 'file' or 'username-env'/'password-env', got a string (value not shown)")
            return nil
        }
        guard let f = self.reader.fields(node, at: path, keys: Self.credentialKeys, special: special) else { return nil }
        let file = self.reader.parsed(f, "file", expected: "a file path", echo: false) { $0 }
        let username = self.reader.parsed(f, "username-env", expected: "an environment variable name", echo: false) { $0 }
        let password = self.reader.parsed(f, "password-env", expected: "an environment variable name", echo: false) { $0 }
        if let file {
            if username != nil || password != nil {
                self.reader.fail(f.path("file"), at: f.values["file"]?.mark, "use either 'file' or 'username-env'/'password-env', not both")
                return nil
            }
            return .file(file)
        }
        if let username, let password { return .environment(username: username, password: password) }
        if username != nil || password != nil {
            let missing = username == nil ? "username-env" : "password-env"
            self.reader.fail(f.path(missing), at: node.mark, "'username-env' and 'password-env' go together; '\(missing)' is missing")
        } else if case .mapping(let mapping) = node, mapping.isEmpty {
            self.reader.fail(path, at: node.mark, "credentials need 'file' or 'username-env' and 'password-env' (or leave 'credentials' out)")
        }
        return nil
    }
}
