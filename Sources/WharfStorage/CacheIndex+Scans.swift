import LMDB
import OCIDistribution

/// Walks over the blob records: in key order by batches (reconcile, scrub) and by last access (eviction).
extension CacheIndex {
    /// Up to `limit` blob records in key order, starting after `after` (from the first when nil).
    /// Each call is one short read transaction, so long walks never pin an old snapshot.
    public func blobs(after: Digest?, limit: Int) throws -> [(digest: Digest, record: BlobRecord)] {
        let start = after.map(Self.key)
        return try self.environment.read { txn in
            var out: [(digest: Digest, record: BlobRecord)] = []
            out.reserveCapacity(limit)
            try txn.forEach(self.blobs, from: start) { k, v in
                if let start, k.elementsEqual(start) { return true }
                if let d = Self.digest(fromKey: k), let r = BlobRecord(decoding: v) { out.append((d, r)) }
                return out.count < limit
            }
            return out
        }
    }

    /// The `limit` least recently used blobs (oldest first; ties broken by creation time), skipping
    /// `excluding`, in one read transaction. Reads the first keys of the `access` database (cost grows
    /// with `limit` and `excluding`, not with the index: about a millisecond for 1,000 at 10,000,000
    /// entries, see `wharf-index-bench measure`). Until an index made by an older Wharf has its access
    /// order built (``buildAccessOrder(window:)``), a full scan of the `blobs` database that keeps only
    /// the oldest candidates (linear: 71 ms at 1,000,000 entries).
    public func leastRecentlyUsed(limit: Int, excluding: Set<Digest> = []) throws -> [(digest: Digest, record: BlobRecord)] {
        guard limit > 0 else { return [] }
        let excludedKeys = Set(excluding.map(Self.key))
        let ordered: [(digest: Digest, record: BlobRecord)]? = try self.environment.read { txn in
            guard try txn.withValue(self.meta, Self.accessOrderCompleteKey, { _ in true }) != nil else { return nil }
            var out: [(digest: Digest, record: BlobRecord)] = []
            out.reserveCapacity(limit)
            try txn.forEach(self.accessOrder) { k, _ in
                guard k.count > 16 else { return true }
                let key = Array(UnsafeRawBufferPointer(rebasing: k[16...]))
                if excludedKeys.contains(key) { return true }
                // The record must say what the key says; anything else is a stale key and is skipped.
                guard let record = try txn.withValue(self.blobs, key, { BlobRecord(decoding: $0) }) ?? nil,
                      Self.accessTimes(fromKey: k) == (record.lastAccess, record.createdAt),
                      let digest = key.withUnsafeBytes({ Self.digest(fromKey: $0) })
                else { return true }
                out.append((digest, record))
                return out.count < limit
            }
            return out
        }
        if let ordered { return ordered }
        var kept = try self.environment.read { txn in
            var kept: [(key: [UInt8], record: BlobRecord)] = []
            kept.reserveCapacity(2 * limit)
            var threshold = UInt64.max  // once pruned, anything accessed later than this cannot make the cut
            try txn.forEach(self.blobs) { k, v in
                guard let r = BlobRecord(decoding: v), r.lastAccess <= threshold else { return true }
                let key = Array(k)
                if excludedKeys.contains(key) { return true }
                kept.append((key, r))
                if kept.count >= 2 * limit {
                    kept.sort(by: Self.olderFirst)
                    kept.removeLast(kept.count - limit)
                    threshold = kept[limit - 1].record.lastAccess
                }
                return true
            }
            return kept
        }
        kept.sort(by: Self.olderFirst)
        return kept.prefix(limit).compactMap { entry in
            entry.key.withUnsafeBytes { Self.digest(fromKey: $0) }.map { ($0, entry.record) }
        }
    }

    /// Those of `digests` that have no blob record.
    public func unindexed(_ digests: [Digest]) throws -> [Digest] {
        try self.environment.read { txn in
            try digests.filter { try txn.withValue(self.blobs, Self.key($0)) { _ in true } == nil }
        }
    }

    private static func olderFirst(_ a: (key: [UInt8], record: BlobRecord), _ b: (key: [UInt8], record: BlobRecord)) -> Bool {
        (a.record.lastAccess, a.record.createdAt) < (b.record.lastAccess, b.record.createdAt)
    }

    static func digest(fromKey raw: UnsafeRawBufferPointer) -> Digest? {
        try? Digest(parsing: String(decoding: raw, as: UTF8.self))
    }
}
