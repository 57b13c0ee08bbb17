import CLMDB

/// Recycles read-only transactions: `mdb_txn_reset` keeps the reader slot and
/// the allocation, and `mdb_txn_renew` takes a fresh snapshot, which is much
/// cheaper than `mdb_txn_begin` + `mdb_txn_abort`. Safe across threads
/// because the environment is opened with `MDB_NOTLS`.
final class ReaderPool: @unchecked Sendable {
    private let env: OpaquePointer
    private let capacity: Int
    private let idle = Locked<[OpaquePointer]>([])  // reset (inactive) transactions

    init(env: OpaquePointer, capacity: Int) {
        self.env = env
        self.capacity = capacity
        idle.withLock { $0.reserveCapacity(capacity) }
    }

    /// Returns an active read transaction on a fresh snapshot.
    func checkOut() throws(LMDBError) -> OpaquePointer {
        if let recycled = idle.withLock({ $0.popLast() }) {
            let rc = mdb_txn_renew(recycled)
            if rc == 0 { return recycled }
            mdb_txn_abort(recycled)
            throw LMDBError(code: rc)
        }
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn))
        guard let txn else { throw LMDBError.outOfMemory }
        return txn
    }

    /// Ends the snapshot and keeps the transaction for reuse (or frees it if
    /// the pool is full).
    func checkIn(_ txn: OpaquePointer) {
        mdb_txn_reset(txn)
        let kept = idle.withLock { pool -> Bool in
            guard pool.count < capacity else { return false }
            pool.append(txn)
            return true
        }
        if !kept { mdb_txn_abort(txn) }
    }

    /// Frees every pooled transaction; called before `mdb_env_close`.
    func drain() {
        let all = idle.withLock { pool -> [OpaquePointer] in
            defer { pool.removeAll() }
            return pool
        }
        for txn in all { mdb_txn_abort(txn) }
    }
}
