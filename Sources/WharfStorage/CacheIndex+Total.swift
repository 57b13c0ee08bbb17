import LMDB
import OCIDistribution
import Synchronization

/// The running total of blob bytes, stored in the `meta` database and changed in the same write
/// transaction as the blob records it sums.
extension CacheIndex {
    /// Adds `delta` to the stored blob-bytes total inside `txn`; returns the new total.
    func adjustTotal(_ txn: borrowing WriteTransaction, by delta: Int64) throws -> Int64 {
        let current = try txn.withValue(self.meta, Self.totalKey) { Self.decodeTotal($0) } ?? nil
        let total = max(0, (current ?? 0) + delta)
        try txn.put(self.meta, Self.totalKey, Self.encodeTotal(total))
        return total
    }

    func indexChanged(total: Int64, committed: Digest?) {
        self.totalBytes.store(total, ordering: .releasing)
        self.budget?.indexChanged(total: total, committed: committed)
    }

    static func encodeTotal(_ total: Int64) -> [UInt8] {
        var w = ByteWriter()
        w.u64(UInt64(bitPattern: total))
        return w.bytes
    }

    static func decodeTotal(_ raw: UnsafeRawBufferPointer) -> Int64? {
        var r = ByteReader(raw)
        return r.u64().map { Int64(bitPattern: $0) }
    }
}
