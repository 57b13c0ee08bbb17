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
    /// `excluding`. A full scan of the `blobs` database that keeps only the oldest candidates, in one
    /// read transaction: at 100,000 entries it costs a few milliseconds (see `wharf-startup-bench`).
    public func leastRecentlyUsed(limit: Int, excluding: Set<Digest> = []) throws -> [(digest: Digest, record: BlobRecord)] {
        guard limit > 0 else { return [] }
        let excludedKeys = Set(excluding.map(Self.key))
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
