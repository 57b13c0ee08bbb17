/// A validated content digest (`algorithm:encoded`).
///
/// Only `sha256` is accepted, with exactly 64 lowercase hex characters, so a digest can safely
/// become part of a file path. `sha512` (registered by the OCI image spec, used by no public
/// registry) is refused up front with `DIGEST_INVALID`, everywhere a digest is parsed: a digest
/// Wharf cannot verify must never be fetched, stored or served.
public struct Digest: Sendable, Hashable, CustomStringConvertible {
    public enum Algorithm: String, Sendable { case sha256 }

    public let algorithm: Algorithm
    /// Lowercase hex, validated.
    public let hex: String

    public var description: String { "\(self.algorithm.rawValue):\(self.hex)" }

    /// Parses `sha256:<64 hex>`; accepts `%3A` / `%3a` in place of the colon (clients escape it).
    public init(parsing raw: some StringProtocol) throws(RegistryError) {
        // Fast path for the common spelling (every blob request): `sha256:` and 64 lowercase hex.
        let string = String(raw)
        if let hex = Self.plainSHA256Hex(string) {
            self.algorithm = .sha256
            self.hex = hex
            return
        }
        let text = Self.unescapeColon(string)
        guard let colon = text.firstIndex(of: ":") else {
            throw RegistryError(.digestInvalid, "digest must look like sha256:<64 hex>")
        }
        let algo = text[..<colon]
        let enc = text[text.index(after: colon)...]
        guard Self.isValidAlgorithmGrammar(algo) else { throw RegistryError(.digestInvalid, "invalid digest algorithm") }
        guard let algorithm = Algorithm(rawValue: String(algo)) else {
            throw RegistryError(.digestInvalid, "unsupported digest algorithm '\(algo.prefix(32))': this mirror verifies sha256 only")
        }
        let expected = 64
        guard enc.utf8.count == expected, enc.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
            throw RegistryError(.digestInvalid, "\(algorithm.rawValue) digest needs exactly \(expected) lowercase hex characters")
        }
        self.algorithm = algorithm
        self.hex = String(enc)
    }

    public init(sha256Hex hex: String) {
        self.algorithm = .sha256
        self.hex = hex
    }

    /// The relative path of this blob under a cache root: `blobs/<algo>/<2 hex>/<hex>`.
    public var relativePath: String {
        "blobs/\(self.algorithm.rawValue)/\(self.hex.prefix(2))/\(self.hex)"
    }

    /// Clients may escape the colon as `%3A`; nothing else is unescaped.
    /// The hex part of `sha256:<64 lowercase hex>`, or nil for anything else.
    private static func plainSHA256Hex(_ s: String) -> String? {
        var s = s
        return s.withUTF8 { b -> String? in
            guard b.count == 71, b[0] == 0x73, b[1] == 0x68, b[2] == 0x61, b[3] == 0x32, b[4] == 0x35, b[5] == 0x36, b[6] == 0x3A else { return nil }
            for i in 7..<71 {
                let c = b[i]
                guard (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) else { return nil }
            }
            return String(decoding: UnsafeBufferPointer(rebasing: b[7...]), as: UTF8.self)
        }
    }

    private static func unescapeColon(_ s: String) -> String {
        guard s.utf8.count < 300, s.contains("%") else { return s }
        var out = ""
        var rest = Substring(s)
        while let i = rest.firstIndex(of: "%") {
            out += rest[..<i]
            let after = rest[i...]
            if after.count >= 3, after.dropFirst().prefix(2).uppercased() == "3A" {
                out += ":"
                rest = after.dropFirst(3)
            } else {
                out += "%"
                rest = after.dropFirst()
            }
        }
        return out + rest
    }

    private static func isValidAlgorithmGrammar(_ s: Substring) -> Bool {
        // [a-z0-9]+([+._-][a-z0-9]+)*
        guard !s.isEmpty, s.utf8.count <= 32 else { return false }
        var previousWasSeparator = true
        for c in s.utf8 {
            let alnum = (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39)
            if alnum { previousWasSeparator = false; continue }
            guard c == 0x2B || c == 0x2E || c == 0x5F || c == 0x2D, !previousWasSeparator else { return false }
            previousWasSeparator = true
        }
        return !previousWasSeparator
    }
}

extension Digest {
    /// SHA-256 of `bytes`, as a digest.
    public static func sha256(of bytes: some Collection<UInt8>) -> Digest {
        var h = StreamingSHA256()
        Array(bytes).withUnsafeBytes { h.update($0) }
        return Digest(sha256Hex: h.finalize())
    }
}
