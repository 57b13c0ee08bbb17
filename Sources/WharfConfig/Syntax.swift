import OCIDistribution

/// Shape checks for names that appear in the configuration.
enum Syntax {
    static func isLowerAlnum(_ c: Character) -> Bool { c.isASCII && (c.isLowercase || c.isNumber) }

    /// Upstream name: `[a-z0-9][a-z0-9._-]*`.
    static func isUpstreamName(_ s: String) -> Bool {
        guard let first = s.first, isLowerAlnum(first) else { return false }
        return s.allSatisfy { isLowerAlnum($0) || $0 == "." || $0 == "_" || $0 == "-" }
    }

    /// Path-prefix component: `[a-z0-9]+([._-][a-z0-9]+)*`.
    static func isPrefixComponent(_ s: Substring) -> Bool {
        guard let first = s.first, let last = s.last, isLowerAlnum(first), isLowerAlnum(last) else { return false }
        var previousWasSeparator = false
        for c in s {
            if isLowerAlnum(c) {
                previousWasSeparator = false
            } else if c == "." || c == "_" || c == "-", !previousWasSeparator {
                previousWasSeparator = true
            } else {
                return false
            }
        }
        return true
    }

    /// containerd `ns` value: `host` or `host:port`, lowercase.
    static func isNamespace(_ s: String) -> Bool {
        var host = Substring(s)
        if let colon = s.lastIndex(of: ":") {
            let port = s[s.index(after: colon)...]
            guard !port.isEmpty, port.count <= 5, port.allSatisfy({ $0.isASCII && $0.isNumber }), Int(port)! <= 65535 else { return false }
            host = s[..<colon]
        }
        return !host.isEmpty && host.allSatisfy { isLowerAlnum($0) || $0 == "." || $0 == "-" }
            && host.first != "." && host.last != "." && host.first != "-"
    }

    /// Environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
    static func isEnvironmentName(_ s: String) -> Bool {
        guard let first = s.first, first.isASCII, first.isLetter || first == "_" else { return false }
        return s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }

    /// Pin: `[registry/]REPO[:TAG]` or `[registry/]REPO@ALGORITHM:HEX`. Returns why not, or nil if fine.
    static func pinProblem(_ s: String) -> String? { self.referenceProblem(s, allowRegistry: true) }

    /// Image as the mirror's clients name it: `REPO[:TAG]` or `REPO@ALGORITHM:HEX`. Returns why not, or nil if fine.
    static func imageProblem(_ s: String) -> String? { self.referenceProblem(s, allowRegistry: false) }

    /// Platform: `OS/ARCH` or `OS/ARCH/VARIANT`, each part `[a-z0-9._-]+` (e.g. linux/arm64/v8).
    static func isPlatform(_ s: String) -> Bool {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        return (2...3).contains(parts.count)
            && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy { isLowerAlnum($0) || $0 == "." || $0 == "_" || $0 == "-" } }
    }

    /// Why `url` is not an `http(s)://HOST[:PORT][/PATH]` URL without user info, or nil. `baseOnly`
    /// also refuses a path (other than `/`), a query and a fragment.
    static func httpURLProblem(_ url: String, baseOnly: Bool) -> String? {
        let example = baseOnly ? "expected http(s)://HOST[:PORT], e.g. https://cache.example.com" : "expected an http(s) URL, e.g. https://hooks.example.com/wharf"
        guard let schemeEnd = url.firstRange(of: "://") else { return "'\(url)' is not a URL; \(example)" }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { return "scheme '\(scheme)' is not supported; \(example)" }
        let rest = url[schemeEnd.upperBound...]
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        if authority.contains("@") { return "the URL must not contain user info (user@); put secrets in 'secret-file'" }
        let tail = rest.dropFirst(authority.count)
        if baseOnly, !tail.allSatisfy({ $0 == "/" }) { return "the URL must be a base URL without path, query or fragment; \(example)" }
        var host = authority
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            let port = host[host.index(after: close)...]
            guard port.isEmpty || port.first == ":" && self.isPort(port.dropFirst()) else { return "'\(url)' has a bad port; \(example)" }
            return host.count > 2 ? nil : "'\(url)' has no valid host; \(example)"
        }
        if let colon = host.lastIndex(of: ":") {
            guard self.isPort(host[host.index(after: colon)...]) else { return "'\(url)' has a bad port; \(example)" }
            host = host[..<colon]
        }
        guard !host.isEmpty, host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_") }) else {
            return "'\(url)' has no valid host; \(example)"
        }
        return nil
    }

    static func isPort(_ s: Substring) -> Bool {
        !s.isEmpty && s.count <= 5 && s.allSatisfy { $0.isASCII && $0.isNumber } && Int(s)! <= 65535
    }

    private static func referenceProblem(_ s: String, allowRegistry: Bool) -> String? {
        var rest = Substring(s)
        if let at = rest.firstIndex(of: "@") {
            let digest = rest[rest.index(after: at)...]
            let parts = digest.split(separator: ":", omittingEmptySubsequences: false)
            let lengths = ["sha256": 64]  // sha512 is refused everywhere (see Digest)
            guard parts.count == 2, let length = lengths[String(parts[0])], parts[1].count == length,
                  parts[1].allSatisfy({ $0.isHexDigit && !$0.isUppercase })
            else { return "the digest must be sha256: followed by 64 lowercase hex digits" }
            rest = rest[..<at]
        } else if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            let tag = rest[rest.index(after: colon)...]
            let isWord: (Character) -> Bool = { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
            guard let first = tag.first, isWord(first), tag.count <= 128, tag.allSatisfy({ isWord($0) || $0 == "." || $0 == "-" })
            else { return "the tag must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'" }
            rest = rest[..<colon]
        }
        if allowRegistry, let slash = rest.firstIndex(of: "/"),
           rest[..<slash].contains(where: { $0 == "." || $0 == ":" }) || rest[..<slash] == "localhost" {
            rest = rest[rest.index(after: slash)...]
        }
        do {
            _ = try RepositoryName(parsing: rest)  // the grammar the server checks requests against
        } catch {
            return "\(error.message); expected REPO[:TAG] or REPO@sha256:DIGEST with a lowercase repository name such as library/alpine"
        }
        return nil
    }
}
