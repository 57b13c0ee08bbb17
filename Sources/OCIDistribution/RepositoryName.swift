/// A validated repository name such as `library/alpine` (OCI distribution grammar, ≤ 255 bytes).
public struct RepositoryName: Sendable, Hashable, CustomStringConvertible {
    public let value: String
    public var description: String { self.value }

    public init(parsing raw: some StringProtocol) throws(RegistryError) {
        var s = String(raw)
        guard !s.isEmpty, s.utf8.count <= 255 else { throw RegistryError(.nameInvalid, "repository name must be 1-255 characters") }
        // One pass over the bytes (this runs for every request, hits included).
        let bad = s.withUTF8 { bytes -> Range<Int>? in
            var start = 0
            for i in 0...bytes.count where i == bytes.count || bytes[i] == UInt8(ascii: "/") {
                if !Self.isValidComponent(UnsafeBufferPointer(rebasing: bytes[start..<i])) { return start..<i }
                start = i + 1
            }
            return nil
        }
        if let bad {
            let component = s.utf8.dropFirst(bad.lowerBound).prefix(min(bad.count, 64))
            throw RegistryError(.nameInvalid, "invalid repository name component '\(String(decoding: component, as: UTF8.self))'")
        }
        self.value = s
    }

    /// The number of `/`-separated components.
    public var componentCount: Int { self.value.split(separator: "/").count }

    /// Docker Hub keeps official images under `library/`: `alpine` becomes `library/alpine`.
    public var dockerHubNormalized: RepositoryName {
        guard !self.value.contains("/") else { return self }
        return RepositoryName(trusted: "library/" + self.value)
    }

    /// Returns a name with the first `count` components removed (path-prefix routing).
    public func droppingPrefix(components count: Int) -> RepositoryName? {
        let parts = self.value.split(separator: "/")
        guard parts.count > count else { return nil }
        return RepositoryName(trusted: parts.dropFirst(count).joined(separator: "/"))
    }

    private init(trusted: String) { self.value = trusted }

    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    private static func isValidComponent(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let first = bytes.first, let last = bytes.last, isAlnum(first), isAlnum(last) else { return false }
        var i = 0
        while i < bytes.count {
            if isAlnum(bytes[i]) { i += 1; continue }
            // A separator run: `.`, `_`, `__`, or any number of `-`.
            var j = i
            while j < bytes.count, !isAlnum(bytes[j]) { j += 1 }
            let first = bytes[i], length = j - i
            let ok = (length == 1 && (first == 0x2E || first == 0x5F)) || (length == 2 && first == 0x5F && bytes[i + 1] == 0x5F)
                || (i..<j).allSatisfy { bytes[$0] == 0x2D }
            guard ok else { return false }
            i = j
        }
        return true
    }

    @inline(__always) private static func isAlnum(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
    }
}

/// A validated tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
public struct Tag: Sendable, Hashable, CustomStringConvertible {
    public let value: String
    public var description: String { self.value }

    public init(parsing raw: some StringProtocol) throws(RegistryError) {
        let bytes = Array(raw.utf8)
        guard let first = bytes.first, bytes.count <= 128, Self.isWord(first), bytes.allSatisfy({ Self.isWord($0) || $0 == 0x2E || $0 == 0x2D }) else {
            throw RegistryError(.tagInvalid, "invalid tag", detail: ["tag": String(raw.prefix(64))])
        }
        self.value = String(raw)
    }

    @inline(__always) private static func isWord(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || (b >= 0x30 && b <= 0x39) || b == 0x5F
    }
}

/// A manifest reference: a tag or a digest.
public enum Reference: Sendable, Hashable, CustomStringConvertible {
    case tag(Tag)
    case digest(Digest)

    public init(parsing raw: some StringProtocol) throws(RegistryError) {
        let colon = raw.utf8.withContiguousStorageIfAvailable { Self.hasColon($0) } ?? Self.hasColon(raw.utf8)
        if colon {
            self = .digest(try Digest(parsing: raw))
        } else {
            self = .tag(try Tag(parsing: raw))
        }
    }

    /// A `:` or a percent-encoded one (`%3A`, `%3a`): then it is meant as a digest. Scanned over bytes,
    /// since this runs for every manifest request.
    private static func hasColon(_ bytes: some Sequence<UInt8>) -> Bool {
        var matched = 0  // how much of "%3a" the last bytes matched
        for b in bytes {
            if b == UInt8(ascii: ":") { return true }
            switch (matched, b) {
            case (_, UInt8(ascii: "%")): matched = 1
            case (1, UInt8(ascii: "3")): matched = 2
            case (2, UInt8(ascii: "a")), (2, UInt8(ascii: "A")): return true
            default: matched = 0
            }
        }
        return false
    }

    public var description: String {
        switch self {
        case .tag(let t): t.value
        case .digest(let d): d.description
        }
    }
}
