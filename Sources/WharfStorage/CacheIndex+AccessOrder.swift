import LMDB
import OCIDistribution

/// The `access` database: every blob record again, keyed by (last access, created, digest), so the
/// least recently used blobs are the first keys and an eviction pass reads only what it picks
/// instead of scanning every record (71 ms at 1,000,000 blobs, linear in the index size).
///
/// Every write of a blob record updates its access key in the same transaction
/// (``recordAccessOrder(_:_:old:new:)``). An index made by an older Wharf has blob records and no
/// access keys: `meta` says whether the access database is complete, and until
/// ``buildAccessOrder(window:)`` has filled it (in the background, after the server listens),
/// ``leastRecentlyUsed(limit:excluding:)`` falls back to the full scan.
extension CacheIndex {
    static let accessOrderCompleteKey = Array("access-order-complete".utf8)

    /// `lastAccess` and `createdAt` big-endian (so key order is age order), then `sha256:<hex>`.
    static func accessKey(_ digest: Digest, _ record: BlobRecord) -> [UInt8] {
        var key: [UInt8] = []
        key.reserveCapacity(16 + 7 + digest.hex.utf8.count)
        withUnsafeBytes(of: record.lastAccess.bigEndian) { key.append(contentsOf: $0) }
        withUnsafeBytes(of: record.createdAt.bigEndian) { key.append(contentsOf: $0) }
        key.append(contentsOf: Self.key(digest))
        return key
    }

    /// The (last access, created) times at the front of an access key (at least 16 bytes).
    static func accessTimes(fromKey k: UnsafeRawBufferPointer) -> (UInt64, UInt64) {
        (UInt64(bigEndian: k.loadUnaligned(as: UInt64.self)), UInt64(bigEndian: k.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }

    /// Keeps the access key of `digest` in step with a change of its blob record from `old` to `new`
    /// (nil: absent); called inside every write transaction that puts or deletes a blob record.
    func recordAccessOrder(_ txn: borrowing WriteTransaction, _ digest: Digest, old: BlobRecord?, new: BlobRecord?) throws {
        if let old, old.lastAccess != new?.lastAccess || old.createdAt != new?.createdAt {
            try txn.delete(self.accessOrder, Self.accessKey(digest, old))
        }
        if let new { try txn.put(self.accessOrder, Self.accessKey(digest, new), []) }
    }

    /// True once every blob record has its access key (always for an index made by this version).
    public func isAccessOrderComplete() throws -> Bool {
        try self.environment.read { txn in try txn.withValue(self.meta, Self.accessOrderCompleteKey) { _ in true } ?? false }
    }

    /// Marks a fresh index (no blob records yet) as having a complete access order.
    func markAccessOrderCompleteIfEmpty() throws {
        guard try !self.isAccessOrderComplete() else { return }  // no write transaction on a normal start
        try self.environment.write { txn in
            guard try txn.withValue(self.meta, Self.accessOrderCompleteKey, { _ in true }) == nil, try txn.count(self.blobs) == 0 else { return }
            try txn.put(self.meta, Self.accessOrderCompleteKey, [1])
        }
    }

    /// Fills the access database of an index made by an older Wharf, then marks it complete; returns
    /// how many keys it wrote (0 when it was complete already). Safe while the server runs: writers
    /// keep access keys up to date all along, and each key is written from the record as it is inside
    /// the write transaction. Works by windows of last-access hours holding about `window` records
    /// (one read pass each, then sorted writes of 100,000 keys per transaction), so memory stays
    /// bounded and the B-tree is appended to rather than rewritten. Blocking: run it off the request path.
    /// Once `shouldStop` says so it returns what it wrote so far and leaves the order incomplete
    /// (the next start goes on from scratch; keys already written stay right).
    @discardableResult
    public func buildAccessOrder(window: Int = 500_000, shouldStop: () -> Bool = { false }) throws -> Int {
        guard try !self.isAccessOrderComplete() else { return 0 }
        var stopped = false
        /// Polled once per 65,536 records read and once per write transaction.
        func stopping(_ counter: inout Int) -> Bool {
            counter &+= 1
            if counter & 0xFFFF == 0, shouldStop() { stopped = true }
            return stopped
        }
        var seen = 0
        // Pass 1: how many records were last accessed in each hour.
        var hours: [UInt64: Int] = [:]
        try self.environment.read { txn in
            try txn.forEach(self.blobs) { _, v in
                if let r = BlobRecord(decoding: v) { hours[r.lastAccess / 3600, default: 0] += 1 }
                return !stopping(&seen)
            }
        }
        if stopped { return 0 }
        var windows: [ClosedRange<UInt64>] = []
        var first: UInt64?
        var inWindow = 0
        for hour in hours.keys.sorted() {
            if first == nil { first = hour }
            inWindow += hours[hour]!
            if inWindow >= window {
                windows.append(first!...hour)
                first = nil
                inWindow = 0
            }
        }
        if let first { windows.append(first...UInt64.max) }
        if let last = windows.popLast() { windows.append(last.lowerBound...UInt64.max) }  // records touched since pass 1
        var written = 0
        for hoursInWindow in windows {
            var picked: [(digest: Digest, record: BlobRecord)] = []
            try self.environment.read { txn in
                try txn.forEach(self.blobs) { k, v in
                    if let r = BlobRecord(decoding: v), hoursInWindow.contains(r.lastAccess / 3600), let d = Self.digest(fromKey: k) { picked.append((d, r)) }
                    return !stopping(&seen)
                }
            }
            if stopped { return written }
            picked.sort { ($0.record.lastAccess, $0.record.createdAt) < ($1.record.lastAccess, $1.record.createdAt) }
            for start in stride(from: 0, to: picked.count, by: 100_000) {
                if shouldStop() { return written }
                written += try self.environment.write { txn in
                    var n = 0
                    for (digest, _) in picked[start..<min(start + 100_000, picked.count)] {
                        // The record as it is now: a hit or a removal since the read pass already moved or dropped its key.
                        guard let current = try txn.withValue(self.blobs, Self.key(digest), { BlobRecord(decoding: $0) }) ?? nil else { continue }
                        try txn.put(self.accessOrder, Self.accessKey(digest, current), [])
                        n += 1
                    }
                    return n
                }
            }
        }
        try self.environment.write { txn in try txn.put(self.meta, Self.accessOrderCompleteKey, [1]) }
        return written
    }
}
