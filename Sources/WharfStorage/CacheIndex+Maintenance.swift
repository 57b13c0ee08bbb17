import LMDB
import OCIDistribution
import WharfClock

/// Whole-index upkeep for `wharf gc`, imports and benchmarks.
extension CacheIndex {
    /// A blob to record with ``commitBlobs(_:)``.
    public struct BlobEntry: Sendable {
        public let digest: Digest
        public let size: Int64
        public let lastAccess: UInt64
        /// A repository the upstream served it through (written as a confirmed link), if any.
        public let link: (upstream: String, repository: String)?

        public init(digest: Digest, size: Int64, lastAccess: UInt64, link: (upstream: String, repository: String)? = nil) {
            self.digest = digest
            self.size = size
            self.lastAccess = lastAccess
            self.link = link
        }
    }

    /// Records many verified blobs (and their links) in one transaction (bulk import, e.g. re-indexing
    /// files or building a large index for `wharf-startup-bench` and `wharf-index-bench generate`).
    public func commitBlobs(_ entries: [BlobEntry]) throws {
        let now = self.clock.wallSeconds()
        let total = try self.environment.write { txn in
            var delta: Int64 = 0
            for e in entries {
                let key = Self.key(e.digest)
                let old = try txn.withValue(self.blobs, key) { BlobRecord(decoding: $0) } ?? nil
                let record = BlobRecord(size: e.size, createdAt: now, lastAccess: e.lastAccess)
                try txn.put(self.blobs, key, record.encoded)
                try self.recordAccessOrder(txn, e.digest, old: old, new: record)
                if let link = e.link { try txn.put(self.links, Self.linkKey(link.upstream, link.repository, e.digest), Self.confirmedLink(size: e.size)) }
                delta += e.size - (old?.size ?? 0)
            }
            return try self.adjustTotal(txn, by: delta)
        }
        self.indexChanged(total: total, committed: nil)
    }

    /// Adds up every blob record and stores the result as the running total (one scan, one write).
    /// Returns the total stored before (nil if there was none) and the new one.
    @discardableResult
    public func recomputeBlobBytes() throws -> (before: Int64?, after: Int64) {
        let result = try self.environment.write { txn -> (Int64?, Int64) in
            let before = try txn.withValue(self.meta, Self.totalKey) { Self.decodeTotal($0) } ?? nil
            var sum: Int64 = 0
            try txn.forEach(self.blobs) { _, v in
                sum += BlobRecord(decoding: v)?.size ?? 0
                return true
            }
            try txn.put(self.meta, Self.totalKey, Self.encodeTotal(sum))
            return (before, sum)
        }
        self.indexChanged(total: result.1, committed: nil)
        return result
    }

    /// Tags whose manifest digest is not in the manifests database; removed unless `dryRun`.
    /// Returns how many there were.
    @discardableResult
    public func removeDanglingTags(dryRun: Bool) throws -> Int {
        if dryRun {
            return try self.environment.read { txn in
                var n = 0
                try txn.forEach(self.tags) { _, v in
                    let target = TagRecord(decoding: v)  // an undecodable record counts as dangling too
                    if try target.map({ try txn.withValue(self.manifests, Self.key($0.digest), { _ in true }) == nil }) ?? true { n += 1 }
                    return true
                }
                return n
            }
        }
        return try self.environment.write { txn in
            var dangling: [[UInt8]] = []
            try txn.forEach(self.tags) { k, v in
                let target = TagRecord(decoding: v)
                if try target.map({ try txn.withValue(self.manifests, Self.key($0.digest), { _ in true }) == nil }) ?? true {
                    dangling.append(Array(k))
                }
                return true
            }
            for key in dangling { try txn.delete(self.tags, key) }
            return dangling.count
        }
    }
}
