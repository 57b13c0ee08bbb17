import OCIDistribution

/// What the index knows about one complete, verified blob.
public struct BlobRecord: Sendable, Hashable {
    public var size: Int64
    public var createdAt: UInt64
    public var lastAccess: UInt64

    public init(size: Int64, createdAt: UInt64, lastAccess: UInt64) {
        self.size = size
        self.createdAt = createdAt
        self.lastAccess = lastAccess
    }

    var encoded: [UInt8] {
        var out = ByteWriter()
        out.u64(UInt64(bitPattern: self.size)); out.u64(self.createdAt); out.u64(self.lastAccess)
        return out.bytes
    }

    init?(decoding raw: UnsafeRawBufferPointer) {
        var r = ByteReader(raw)
        guard let s = r.u64(), let c = r.u64(), let a = r.u64() else { return nil }
        self.init(size: Int64(bitPattern: s), createdAt: c, lastAccess: a)
    }
}

/// A manifest stored by digest with its exact bytes and upstream media type.
public struct StoredManifest: Sendable, Hashable {
    public let digest: Digest
    public let mediaType: String
    public let bytes: [UInt8]

    public init(digest: Digest, mediaType: String, bytes: [UInt8]) {
        self.digest = digest
        self.mediaType = mediaType
        self.bytes = bytes
    }

    func encoded(createdAt: UInt64) -> [UInt8] {
        var out = ByteWriter()
        out.u64(createdAt); out.string(self.mediaType); out.bytes.append(contentsOf: self.bytes)
        return out.bytes
    }

    init?(digest: Digest, decoding raw: UnsafeRawBufferPointer) {
        var r = ByteReader(raw)
        // A record with a media type that could not be sent as a manifest's is treated as absent.
        guard r.u64() != nil, let type = r.string(), MediaType.isManifestType(type) else { return nil }
        self.init(digest: digest, mediaType: type, bytes: r.rest())
    }
}

/// A tag resolved to a manifest digest, with when it was fetched.
public struct TagRecord: Sendable, Hashable {
    public let digest: Digest
    public let mediaType: String
    public let size: Int64
    public let fetchedAt: UInt64

    public init(digest: Digest, mediaType: String, size: Int64, fetchedAt: UInt64) {
        self.digest = digest
        self.mediaType = mediaType
        self.size = size
        self.fetchedAt = fetchedAt
    }

    var encoded: [UInt8] {
        var out = ByteWriter()
        out.u64(self.fetchedAt); out.u64(UInt64(bitPattern: self.size)); out.string(self.digest.description); out.string(self.mediaType)
        return out.bytes
    }

    init?(decoding raw: UnsafeRawBufferPointer) {
        var r = ByteReader(raw)
        guard let f = r.u64(), let s = r.u64(), let d = r.string(), let digest = try? Digest(parsing: d), let t = r.string(),
              MediaType.isManifestType(t)
        else {
            return nil
        }
        self.init(digest: digest, mediaType: t, size: Int64(bitPattern: s), fetchedAt: f)
    }
}

struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { self.bytes.append(contentsOf: $0) } }
    mutating func string(_ s: String) {
        let u = Array(s.utf8.prefix(Int(UInt16.max)))
        withUnsafeBytes(of: UInt16(u.count).littleEndian) { self.bytes.append(contentsOf: $0) }
        self.bytes.append(contentsOf: u)
    }
}

struct ByteReader {
    let raw: UnsafeRawBufferPointer
    var offset = 0
    init(_ raw: UnsafeRawBufferPointer) { self.raw = raw }
    mutating func u64() -> UInt64? {
        guard self.offset + 8 <= self.raw.count else { return nil }
        var v: UInt64 = 0
        withUnsafeMutableBytes(of: &v) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: self.raw[self.offset..<self.offset + 8])) }
        self.offset += 8
        return UInt64(littleEndian: v)
    }
    mutating func string() -> String? {
        guard self.offset + 2 <= self.raw.count else { return nil }
        let n = Int(self.raw[self.offset]) | Int(self.raw[self.offset + 1]) << 8
        self.offset += 2
        guard self.offset + n <= self.raw.count else { return nil }
        defer { self.offset += n }
        return String(decoding: self.raw[self.offset..<self.offset + n], as: UTF8.self)
    }
    mutating func rest() -> [UInt8] {
        defer { self.offset = self.raw.count }
        return Array(self.raw[self.offset...])
    }
}
