/// Manifest media types Wharf knows, and the client's `Accept` set.
public enum MediaType {
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let ociIndex = "application/vnd.oci.image.index.v1+json"
    public static let dockerSchema1 = "application/vnd.docker.distribution.manifest.v1+json"
    public static let dockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"

    /// The four modern manifest types, in the order used for the accept-class bitmask.
    public static let modern = [dockerManifest, dockerManifestList, ociManifest, ociIndex]

    public static func isSchema1(_ type: String) -> Bool {
        type == dockerSchema1 || type == dockerSchema1Signed
    }

    /// The longest media type accepted: RFC 6838 allows 127 characters each for type and subtype.
    public static let maxLength = 255

    /// Whether `type` is a bare media type by RFC 6838's grammar (`type "/" subtype`, each a
    /// restricted-name of at most 127 characters: a letter or digit, then letters, digits and
    /// `!#$&-^_.+`), without parameters. Everything Wharf sends as `Content-Type` (or stores to send
    /// later) passes this first, so a media type from an upstream can never break a response head.
    public static func isValid(_ type: String) -> Bool {
        var type = type
        return type.withUTF8 { bytes in
            guard bytes.count <= Self.maxLength, let slash = bytes.firstIndex(of: UInt8(ascii: "/")) else { return false }
            return Self.isRestrictedName(bytes[..<slash]) && Self.isRestrictedName(bytes[(slash + 1)...])
        }
    }

    /// Whether `type` may be a manifest's media type: valid (``isValid(_:)``) and JSON, that is
    /// `application/json` or an `application/…+json` type (the image manifest and index types, Docker's,
    /// and any artifact type built the same way). Anything else from an upstream — `text/html`,
    /// `image/svg+xml` — would have a browser render the manifest's bytes from Wharf's own origin.
    public static func isManifestType(_ type: String) -> Bool {
        guard Self.isValid(type), type.hasPrefix("application/") else { return false }
        return type == "application/json" || type.hasSuffix("+json")
    }

    private static func isRestrictedName(_ name: Slice<UnsafeBufferPointer<UInt8>>) -> Bool {
        guard let first = name.first, name.count <= 127, Self.isAlphanumeric(first) else { return false }
        return name.dropFirst().allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "-"), UInt8(ascii: "^"),
                UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "+"):
                return true
            default:
                return Self.isAlphanumeric(byte)
            }
        }
    }

    private static func isAlphanumeric(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
    }
}

/// The set of manifest media types a client accepts, merged from every `Accept` line.
public struct AcceptSet: Sendable, Hashable {
    /// Bitmask over `MediaType.modern`; bit 4 means the client also accepts anything else (`*/*`, schema1, json).
    public let mask: UInt8
    public let wildcard: Bool
    public let types: [String]

    public static let all = AcceptSet(lines: ["*/*"])

    /// Builds the set from every `Accept` header line (each may hold several comma-separated types; `q=` ignored).
    ///
    /// Parsed over bytes, with one reused buffer: it runs for every manifest request, cached tags included
    /// (the `String`/`Character` version was 16 % of the CPU of a cached-tag hit).
    public init(lines: [String]) {
        var types: [String] = []
        var wildcard = false
        var mask: UInt8 = 0
        var item: [UInt8] = []
        item.reserveCapacity(64)
        var inParameters = false
        func take() {
            while let last = item.last, last == 0x20 || last == 0x09 { item.removeLast() }
            defer {
                item.removeAll(keepingCapacity: true)
                inParameters = false
            }
            guard !item.isEmpty, item.count < 256 else { return }
            if item.elementsEqual(Self.anyType) || item.elementsEqual(Self.anyApplicationType) { wildcard = true }
            if let i = Self.modernTypes.firstIndex(where: { $0.elementsEqual(item) }) { mask |= 1 << UInt8(i) }
            guard types.count < 32 else { return }
            let type = String(decoding: item, as: UTF8.self)
            if !types.contains(type) { types.append(type) }
        }
        for line in lines {
            for byte in line.utf8 {
                switch byte {
                case UInt8(ascii: ","): take()
                case _ where inParameters: continue
                case UInt8(ascii: ";"): inParameters = true
                case 0x20 where item.isEmpty, 0x09 where item.isEmpty: continue
                case UInt8(ascii: "A")...UInt8(ascii: "Z"): item.append(byte + 0x20)
                default: item.append(byte)
                }
            }
            take()
        }
        if types.isEmpty { wildcard = true }  // no Accept at all: any type is acceptable (RFC 9110)
        if wildcard { mask = 0b1111 }
        self.types = types
        self.wildcard = wildcard
        self.mask = mask
    }

    private static let modernTypes = MediaType.modern.map { Array($0.utf8) }
    private static let anyType = Array("*/*".utf8)
    private static let anyApplicationType = Array("application/*".utf8)

    /// A short stable key for caching tag answers per accept class.
    public var classKey: String { self.wildcard ? "all" : String(self.mask, radix: 16) }

    public func accepts(_ mediaType: String) -> Bool {
        if self.wildcard { return true }
        if let i = MediaType.modern.firstIndex(of: mediaType) { return self.mask & (1 << UInt8(i)) != 0 }
        return self.types.contains(mediaType)
    }

    /// The header value to forward upstream for this client.
    public var headerValue: String {
        self.types.isEmpty ? MediaType.modern.joined(separator: ", ") : self.types.joined(separator: ", ")
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        var s = self
        while s.first == " " || s.first == "\t" { s.removeFirst() }
        while s.last == " " || s.last == "\t" { s.removeLast() }
        return String(s)
    }
}
