#if canImport(Glibc)
import Glibc
#endif
import LMDB
import OCIDistribution
import Synchronization
import WharfClock

/// The LMDB index: the truth about what is complete in the cache.
///
/// Databases: `blobs` (digest → ``BlobRecord``), `manifests` (digest → ``StoredManifest``),
/// `tags` ((upstream, repo, tag, accept class) → ``TagRecord``), `links` ((upstream, repo, digest) →
/// confirmed or named: which digests the upstream served through which repository, and which its
/// manifests merely name), `access` (the blobs again, keyed by last access: the eviction order, see
/// `CacheIndex+AccessOrder.swift`) and `meta` (the running total of blob bytes, updated
/// in the same transaction as every blob write, so startup never has to add up a million records).
/// Reads never take the writer lock; last-access updates from hits are kept in memory and flushed in
/// one batched write (``flushAccessTimes()``).
public final class CacheIndex: Sendable {
    let environment: Environment
    let blobs: Database
    let manifests: Database
    let tags: Database
    let links: Database
    let meta: Database
    /// (last access, created, digest) → empty: the blobs in eviction order.
    let accessOrder: Database
    let pendingAccess = Mutex<[Digest: UInt64]>([:])
    let totalBytes = Atomic<Int64>(0)
    /// Told about every change of the blob-bytes total.
    public let budget: CacheBudget?
    /// Stamps creation, access and fetch times.
    public let clock: WharfClock

    static let totalKey = Array("blob-bytes".utf8)

    /// Opens (or creates) the index. An index without a stored total (made by an older Wharf) has
    /// its total computed once by a scan and stored.
    public init(directory: String, budget: CacheBudget? = nil, clock: WharfClock = .system) throws {
        self.environment = try Environment(path: directory)
        self.blobs = try self.environment.database(named: "blobs")
        self.manifests = try self.environment.database(named: "manifests")
        self.tags = try self.environment.database(named: "tags")
        self.links = try self.environment.database(named: "links")
        self.meta = try self.environment.database(named: "meta")
        self.accessOrder = try self.environment.database(named: "access")
        self.budget = budget
        self.clock = clock
        let stored = try self.environment.read { txn in try txn.withValue(self.meta, Self.totalKey) { Self.decodeTotal($0) } ?? nil }
        if let stored {
            self.indexChanged(total: stored, committed: nil)
        } else {
            try self.recomputeBlobBytes()
        }
        try self.markAccessOrderCompleteIfEmpty()
    }

    /// Bytes of all blobs in the index (as of this process's last read or write of the total).
    public var blobBytes: Int64 { self.totalBytes.load(ordering: .acquiring) }

    // MARK: Blobs

    public func blob(_ digest: Digest) throws -> BlobRecord? {
        let key = Self.key(digest)
        return try self.environment.read { txn in
            try txn.withValue(self.blobs, key) { BlobRecord(decoding: $0) } ?? nil
        }
    }

    /// The blob's record and whether it is linked (confirmed) to `repository`, in one read transaction (the hit path).
    public func blob(_ digest: Digest, linkedTo upstream: String, repository: String) throws -> (record: BlobRecord?, linked: Bool) {
        let key = Self.key(digest), link = Self.linkKey(upstream, repository, digest)
        return try self.environment.read { txn in
            let record = try txn.withValue(self.blobs, key) { BlobRecord(decoding: $0) } ?? nil
            return (record, try txn.withValue(self.links, link) { Self.isConfirmed($0) } ?? false)
        }
    }

    /// Records a verified blob (and, optionally, that it was seen in `repository`) in one transaction;
    /// returns its record. Blobs enter the cache through ``BlobIngest``, which calls this once the file is in place.
    @discardableResult
    public func commitBlob(_ digest: Digest, size: Int64, link: (upstream: String, repository: String)?) throws -> BlobRecord {
        let now = self.clock.wallSeconds()
        let record = BlobRecord(size: size, createdAt: now, lastAccess: now)
        let total = try self.environment.write { txn in
            let key = Self.key(digest)
            let old = try txn.withValue(self.blobs, key) { BlobRecord(decoding: $0) } ?? nil
            try txn.put(self.blobs, key, record.encoded)
            try self.recordAccessOrder(txn, digest, old: old, new: record)
            if let link { try txn.put(self.links, Self.linkKey(link.upstream, link.repository, digest), Self.confirmedLink(size: size)) }
            return try self.adjustTotal(txn, by: size - (old?.size ?? 0))
        }
        self.indexChanged(total: total, committed: digest)
        return record
    }

    /// Removes one blob's entry (the caller removes the file).
    public func removeBlob(_ digest: Digest) throws {
        try self.removeBlobs([digest])
    }

    /// Removes, in one write transaction, the entries of `digests` for which `shouldRemove` (called
    /// inside the transaction with the current record) is true; returns what was removed. The caller
    /// removes the files, after this returns. `shouldRemove` must not write to the index.
    @discardableResult
    public func removeBlobs(
        _ digests: some Sequence<Digest>, where shouldRemove: (Digest, BlobRecord) -> Bool = { _, _ in true }
    ) throws -> [(digest: Digest, record: BlobRecord)] {
        var removed: [(digest: Digest, record: BlobRecord)] = []
        let total = try self.environment.write { txn in
            removed = []
            var freed: Int64 = 0
            for digest in digests {
                let key = Self.key(digest)
                guard let record = try txn.withValue(self.blobs, key, { BlobRecord(decoding: $0) }) ?? nil,
                      shouldRemove(digest, record)
                else { continue }
                try txn.delete(self.blobs, key)
                try self.recordAccessOrder(txn, digest, old: record, new: nil)
                removed.append((digest, record))
                freed += record.size
            }
            return try self.adjustTotal(txn, by: -freed)
        }
        self.indexChanged(total: total, committed: nil)
        return removed
    }

    /// Notes a hit; written to LMDB later by ``flushAccessTimes()``.
    public func touch(_ digest: Digest) {
        let now = self.clock.wallSeconds()
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
                guard let old = try txn.withValue(self.blobs, key, { BlobRecord(decoding: $0) }) ?? nil else { continue }
                var record = old
                record.lastAccess = max(record.lastAccess, time)
                try txn.put(self.blobs, key, record.encoded)
                try self.recordAccessOrder(txn, digest, old: old, new: record)
                n += 1
            }
            return n
        }
    }

    /// True if a hit on `digest` is waiting for the next ``flushAccessTimes()``.
    public func hasPendingTouch(_ digest: Digest) -> Bool {
        self.pendingAccess.withLock { $0[digest] != nil }
    }

    // MARK: Manifests

    public func manifest(_ digest: Digest) throws -> StoredManifest? {
        try self.environment.read { txn in
            try txn.withValue(self.manifests, Self.key(digest)) { StoredManifest(digest: digest, decoding: $0) } ?? nil
        }
    }

    /// Stores a verified manifest, its confirmed link to `repository`, optionally a tag mapping, and
    /// the digests it names (``name(_:upstream:repository:)``), in one transaction. The tag mapping is
    /// recorded as fetched `tagAge` seconds ago (a mapping its upstream did not confirm is stored expired).
    public func putManifest(
        _ manifest: StoredManifest, upstream: String, repository: String, tag: (name: String, acceptClass: String)?, naming: [Digest] = [],
        tagAge: UInt64 = 0
    ) throws {
        let now = self.clock.wallSeconds()
        try self.environment.write { txn in
            try txn.put(self.manifests, Self.key(manifest.digest), manifest.encoded(createdAt: now))
            try txn.put(self.links, Self.linkKey(upstream, repository, manifest.digest), Self.confirmedLink)
            for d in naming {
                let key = Self.linkKey(upstream, repository, d)
                if try txn.get(self.links, key) == nil { try txn.put(self.links, key, []) }
            }
            if let tag {
                let record = TagRecord(
                    digest: manifest.digest, mediaType: manifest.mediaType, size: Int64(manifest.bytes.count), fetchedAt: now - min(now, tagAge))
                try txn.put(self.tags, Self.tagKey(upstream, repository, tag.name, tag.acceptClass), record.encoded)
            }
        }
    }

    public func tag(upstream: String, repository: String, tag: String, acceptClass: String) throws -> TagRecord? {
        try self.environment.read { txn in
            try txn.withValue(self.tags, Self.tagKey(upstream, repository, tag, acceptClass)) { TagRecord(decoding: $0) } ?? nil
        }
    }

    /// A tag's record and the manifest it points to, read in one transaction (a cached tag hit).
    public func taggedManifest(upstream: String, repository: String, tag: String, acceptClass: String) throws -> (TagRecord, StoredManifest?)? {
        try self.environment.read { txn in
            guard let record = try txn.withValue(self.tags, Self.tagKey(upstream, repository, tag, acceptClass), { TagRecord(decoding: $0) }) ?? nil
            else { return nil }
            let digest = record.digest
            let manifest = try txn.withValue(self.manifests, Self.key(digest)) { StoredManifest(digest: digest, decoding: $0) } ?? nil
            return (record, manifest)
        }
    }

    // Links say which digests a repository may serve. A *confirmed* link means the upstream served
    // or confirmed the digest through that repository; only those let a cached digest be served
    // without asking the upstream. A *named* link means only that one of the repository's manifests
    // lists it: a manifest can name any digest (a foreign layer, or a registry that does not check
    // what is pushed), so that alone never opens another repository's cached bytes (issue #12, bug 3).
    // Links written before this distinction hold an empty value and count as named.

    /// Records that the upstream served or confirmed each of `digests` through `repository` (with
    /// the blob's size when it is cached, for the one-lookup hit: `CacheIndex+HitLookup.swift`).
    public func link(_ digests: [Digest], upstream: String, repository: String) throws {
        guard !digests.isEmpty else { return }
        try self.environment.write { txn in
            for d in digests {
                let size = try txn.withValue(self.blobs, Self.key(d)) { BlobRecord(decoding: $0)?.size } ?? nil
                try txn.put(self.links, Self.linkKey(upstream, repository, d), size.map(Self.confirmedLink(size:)) ?? Self.confirmedLink)
            }
        }
    }

    /// Records that a manifest of `repository` names each of `digests`; a confirmed link stays confirmed.
    public func name(_ digests: [Digest], upstream: String, repository: String) throws {
        guard !digests.isEmpty else { return }
        try self.environment.write { txn in
            for d in digests {
                let key = Self.linkKey(upstream, repository, d)
                if try txn.get(self.links, key) == nil { try txn.put(self.links, key, []) }
            }
        }
    }

    /// True when the upstream served or confirmed `digest` through `repository`.
    public func isLinked(_ digest: Digest, upstream: String, repository: String) throws -> Bool {
        try self.environment.read { txn in try txn.withValue(self.links, Self.linkKey(upstream, repository, digest)) { Self.isConfirmed($0) } ?? false }
    }

    /// True when `digest` is linked to `repository` at all, confirmed or only named by a manifest.
    public func isNamed(_ digest: Digest, upstream: String, repository: String) throws -> Bool {
        try self.environment.read { txn in try txn.get(self.links, Self.linkKey(upstream, repository, digest)) != nil }
    }

    static let confirmedLink: [UInt8] = [1]
    private static func isConfirmed(_ value: UnsafeRawBufferPointer) -> Bool { value.first == 1 }

    public func counts() throws -> (blobs: Int, manifests: Int, tags: Int) {
        try self.environment.read { txn in (try txn.count(self.blobs), try txn.count(self.manifests), try txn.count(self.tags)) }
    }

    // MARK: Keys

    static func key(_ d: Digest) -> [UInt8] {
        var key: [UInt8] = []
        key.reserveCapacity(d.hex.utf8.count + 7)
        Self.append(d, to: &key)
        return key
    }

    // Names are validated (no NUL), so NUL separates components unambiguously. Long names are hashed
    // to stay under LMDB's 511-byte key limit.
    static func tagKey(_ upstream: String, _ repo: String, _ tag: String, _ accept: String) -> [UInt8] {
        var key: [UInt8] = []
        key.reserveCapacity(upstream.utf8.count + repo.utf8.count + tag.utf8.count + accept.utf8.count + 3)
        key.append(contentsOf: upstream.utf8)
        key.append(0)
        key.append(contentsOf: repo.utf8)
        key.append(0)
        key.append(contentsOf: tag.utf8)
        key.append(0)
        key.append(contentsOf: accept.utf8)
        return Self.bounded(key)
    }

    /// Built byte by byte: it is looked up on every blob hit.
    static func linkKey(_ upstream: String, _ repo: String, _ d: Digest) -> [UInt8] {
        var key: [UInt8] = []
        key.reserveCapacity(upstream.utf8.count + repo.utf8.count + d.hex.utf8.count + 9)
        key.append(contentsOf: upstream.utf8)
        key.append(0)
        key.append(contentsOf: repo.utf8)
        key.append(0)
        Self.append(d, to: &key)
        return Self.bounded(key)
    }

    /// `algorithm:hex`, the digest's text form.
    private static func append(_ d: Digest, to key: inout [UInt8]) {
        key.append(contentsOf: d.algorithm.rawValue.utf8)
        key.append(UInt8(ascii: ":"))
        key.append(contentsOf: d.hex.utf8)
    }

    private static func bounded(_ raw: [UInt8]) -> [UInt8] {
        guard raw.count > 500 else { return raw }
        return Array(("#" + Digest.sha256(of: raw).hex).utf8)
    }
}
