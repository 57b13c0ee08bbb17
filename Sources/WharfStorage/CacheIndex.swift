#if canImport(Glibc)
import Glibc
#endif
import LMDB
import OCIDistribution
import Synchronization

/// The LMDB index: the truth about what is complete in the cache.
///
/// Databases: `blobs` (digest → ``BlobRecord``), `manifests` (digest → ``StoredManifest``),
/// `tags` ((upstream, repo, tag, accept class) → ``TagRecord``) and `links` ((upstream, repo, digest) → ∅,
/// which digests were seen in which repository). Reads never take the writer lock; last-access
/// updates from hits are kept in memory and flushed in one batched write (``flushAccessTimes()``).
public final class CacheIndex: Sendable {
    private let environment: Environment
    private let blobs: Database
    private let manifests: Database
    private let tags: Database
    private let links: Database
    private let pendingAccess = Mutex<[Digest: UInt64]>([:])

    public init(directory: String) throws {
        self.environment = try Environment(path: directory)
        self.blobs = try self.environment.database(named: "blobs")
        self.manifests = try self.environment.database(named: "manifests")
        self.tags = try self.environment.database(named: "tags")
        self.links = try self.environment.database(named: "links")
    }

    // MARK: Blobs

    public func blob(_ digest: Digest) throws -> BlobRecord? {
        let key = Self.key(digest)
        return try self.environment.read { txn in
            try txn.withValue(self.blobs, key) { BlobRecord(decoding: $0) } ?? nil
        }
    }

    /// Records a verified blob (and, optionally, that it was seen in `repository`) in one transaction.
    public func commitBlob(_ digest: Digest, size: Int64, link: (upstream: String, repository: String)?) throws {
        let now = Clock.seconds()
        try self.environment.write { txn in
            try txn.put(self.blobs, Self.key(digest), BlobRecord(size: size, createdAt: now, lastAccess: now).encoded)
            if let link { try txn.put(self.links, Self.linkKey(link.upstream, link.repository, digest), []) }
        }
    }

    public func removeBlob(_ digest: Digest) throws {
        try self.environment.write { txn in _ = try txn.delete(self.blobs, Self.key(digest)) }
    }

    /// Notes a hit; written to LMDB later by ``flushAccessTimes()``.
    public func touch(_ digest: Digest) {
        let now = Clock.seconds()
        self.pendingAccess.withLock { $0[digest] = now }
    }

    /// Writes all pending last-access times in one transaction. Returns how many were written.
    @discardableResult
    public func flushAccessTimes() throws -> Int {
        let pending = self.pendingAccess.withLock { p -> [Digest: UInt64] in
            defer { p.removeAll(keepingCapacity: true) }
            return p
        }
        guard !pending.isEmpty else { return 0 }
        return try self.environment.write { txn in
            var n = 0
            for (digest, time) in pending {
                let key = Self.key(digest)
                guard var record = try txn.withValue(self.blobs, key, { BlobRecord(decoding: $0) }) ?? nil else { continue }
                record.lastAccess = max(record.lastAccess, time)
                try txn.put(self.blobs, key, record.encoded)
                n += 1
            }
            return n
        }
    }

    /// Every blob digest in the index (for reconcile and scrub).
    public func allBlobs() throws -> [(Digest, BlobRecord)] {
        try self.environment.read { txn in
            var out: [(Digest, BlobRecord)] = []
            try txn.forEach(self.blobs) { k, v in
                if let d = try? Digest(parsing: String(decoding: k, as: UTF8.self)), let r = BlobRecord(decoding: v) {
                    out.append((d, r))
                }
                return true
            }
            return out
        }
    }

    // MARK: Manifests

    public func manifest(_ digest: Digest) throws -> StoredManifest? {
        try self.environment.read { txn in
            try txn.withValue(self.manifests, Self.key(digest)) { StoredManifest(digest: digest, decoding: $0) } ?? nil
        }
    }

    /// Stores a verified manifest, optionally with a tag mapping and a repository link, atomically.
    public func putManifest(
        _ manifest: StoredManifest, upstream: String, repository: String, tag: (name: String, acceptClass: String)?
    ) throws {
        let now = Clock.seconds()
        try self.environment.write { txn in
            try txn.put(self.manifests, Self.key(manifest.digest), manifest.encoded(createdAt: now))
            try txn.put(self.links, Self.linkKey(upstream, repository, manifest.digest), [])
            if let tag {
                let record = TagRecord(digest: manifest.digest, mediaType: manifest.mediaType, size: Int64(manifest.bytes.count), fetchedAt: now)
                try txn.put(self.tags, Self.tagKey(upstream, repository, tag.name, tag.acceptClass), record.encoded)
            }
        }
    }

    public func tag(upstream: String, repository: String, tag: String, acceptClass: String) throws -> TagRecord? {
        try self.environment.read { txn in
            try txn.withValue(self.tags, Self.tagKey(upstream, repository, tag, acceptClass)) { TagRecord(decoding: $0) } ?? nil
        }
    }

    /// Records that `digest` was seen in `repository` (e.g. as a layer of one of its manifests).
    public func link(_ digests: [Digest], upstream: String, repository: String) throws {
        guard !digests.isEmpty else { return }
        try self.environment.write { txn in
            for d in digests { try txn.put(self.links, Self.linkKey(upstream, repository, d), []) }
        }
    }

    public func isLinked(_ digest: Digest, upstream: String, repository: String) throws -> Bool {
        try self.environment.read { txn in try txn.get(self.links, Self.linkKey(upstream, repository, digest)) != nil }
    }

    public func counts() throws -> (blobs: Int, manifests: Int, tags: Int) {
        try self.environment.read { txn in (try txn.count(self.blobs), try txn.count(self.manifests), try txn.count(self.tags)) }
    }

    // MARK: Keys

    static func key(_ d: Digest) -> [UInt8] { Array(d.description.utf8) }

    // Names are validated (no NUL), so NUL separates components unambiguously. Long names are hashed
    // to stay under LMDB's 511-byte key limit.
    static func tagKey(_ upstream: String, _ repo: String, _ tag: String, _ accept: String) -> [UInt8] {
        Self.bounded([upstream, repo, tag, accept])
    }

    static func linkKey(_ upstream: String, _ repo: String, _ d: Digest) -> [UInt8] {
        Self.bounded([upstream, repo, d.description])
    }

    private static func bounded(_ parts: [String]) -> [UInt8] {
        let raw = Array(parts.joined(separator: "\u{0}").utf8)
        guard raw.count > 500 else { return raw }
        return Array(("#" + Digest.sha256(of: raw).hex).utf8)
    }
}

/// Wall-clock seconds since the epoch.
public enum Clock {
    public static func seconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec)
    }
}
