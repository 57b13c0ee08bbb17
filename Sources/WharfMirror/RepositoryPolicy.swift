import OCIDistribution

/// Which repositories of an upstream may be pulled through Wharf: glob allow/deny lists.
///
/// Patterns match the repository name as the upstream knows it (`library/alpine`): `*` matches
/// within one path component, `**` across components, `?` one character. Deny wins; an empty allow
/// list allows everything not denied.
public struct RepositoryPolicy: Sendable, Hashable {
    public let allow: [String]
    public let deny: [String]

    public init(allow: [String] = [], deny: [String] = []) {
        self.allow = allow
        self.deny = deny
    }

    /// Nil when allowed; otherwise the 403 to answer.
    public func check(_ repository: String, upstream: String) -> RegistryError? {
        if let rule = self.deny.first(where: { Glob.matches($0, repository) }) {
            return RegistryError(.denied, "repository \(repository) is denied by this mirror's policy for \(upstream) (rule '\(rule)')")
        }
        if !self.allow.isEmpty, !self.allow.contains(where: { Glob.matches($0, repository) }) {
            return RegistryError(.denied, "repository \(repository) is not in this mirror's allow list for \(upstream)")
        }
        return nil
    }
}

/// Minimal glob matching for repository names.
public enum Glob {
    public static func matches(_ pattern: String, _ text: String) -> Bool {
        self.match(Array(pattern.utf8)[...], Array(text.utf8)[...])
    }

    private static func match(_ p: ArraySlice<UInt8>, _ t: ArraySlice<UInt8>) -> Bool {
        guard let c = p.first else { return t.isEmpty }
        let slash = UInt8(ascii: "/")
        if c == UInt8(ascii: "*") {
            let doubleStar = p.dropFirst().first == UInt8(ascii: "*")
            let rest = doubleStar ? p.dropFirst(2) : p.dropFirst()
            var i = t.startIndex
            while true {
                if self.match(rest, t[i...]) { return true }
                guard i < t.endIndex, doubleStar || t[i] != slash else { return false }
                i += 1
            }
        }
        guard let d = t.first else { return false }
        guard c == UInt8(ascii: "?") ? d != slash : c == d else { return false }
        return self.match(p.dropFirst(), t.dropFirst())
    }
}
