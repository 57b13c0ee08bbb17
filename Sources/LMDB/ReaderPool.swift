import CLMDB
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Recycles read-only transactions: `mdb_txn_reset` keeps the reader slot and
/// the allocation, and `mdb_txn_renew` takes a fresh snapshot, which is much
/// cheaper than `mdb_txn_begin` + `mdb_txn_abort`. Safe across threads
/// because the environment is opened with `MDB_NOTLS`.
///
/// Also counts the read transactions in use, so the map can be grown
/// (``withNoActiveReaders(_:)``) at an instant when none holds a pointer into it.
final class ReaderPool: @unchecked Sendable {
    private struct State {
        var idle: [OpaquePointer] = []  // reset (inactive) transactions
        var active = 0  // checked out, between checkOut and checkIn
        var growing = false  // a remap waits for `active` to reach 0: no new check-outs meanwhile
    }

    private let env: OpaquePointer
    private let capacity: Int
    private let state = Locked(State())

    init(env: OpaquePointer, capacity: Int) {
        self.env = env
        self.capacity = capacity
        state.withLock { $0.idle.reserveCapacity(capacity) }
    }

    /// Returns an active read transaction on a fresh snapshot.
    func checkOut() throws(LMDBError) -> OpaquePointer {
        var recycled: OpaquePointer?
        while true {
            let admitted = state.withLock { s -> Bool in
                guard !s.growing else { return false }
                s.active += 1
                recycled = s.idle.popLast()
                return true
            }
            if admitted { break }
            usleep(20)  // a map growth is under way: it lasts as long as the reads in flight plus a remap
        }
        if let recycled {
            let rc = mdb_txn_renew(recycled)
            if rc == 0 { return recycled }
            mdb_txn_abort(recycled)
            state.withLock { $0.active -= 1 }
            throw LMDBError(code: rc)
        }
        var txn: OpaquePointer?
        let rc = mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn)
        guard rc == 0, let txn else {
            state.withLock { $0.active -= 1 }
            throw rc == 0 ? LMDBError.outOfMemory : LMDBError(code: rc)
        }
        return txn
    }

    /// Ends the snapshot and keeps the transaction for reuse (or frees it if
    /// the pool is full).
    func checkIn(_ txn: OpaquePointer) {
        mdb_txn_reset(txn)
        let kept = state.withLock { s -> Bool in
            s.active -= 1
            guard s.idle.count < capacity else { return false }
            s.idle.append(txn)
            return true
        }
        if !kept { mdb_txn_abort(txn) }
    }

    /// Runs `body` once no read transaction is checked out, after freeing the pooled transactions.
    /// New check-outs wait from the call until `body` returns; the reads in flight finish first (this
    /// polls every 20 µs for them). So it must never be called by a thread that holds a read
    /// transaction, and a read body must never open another read (it could wait for this, which waits
    /// for it). For `mdb_env_set_mapsize`, which remaps the file.
    func withNoActiveReaders<R>(_ body: () throws -> R) rethrows -> R {
        state.withLock { $0.growing = true }
        defer { state.withLock { $0.growing = false } }
        while true {
            let done: R? = try state.withLock { s -> R? in
                guard s.active == 0 else { return nil }
                for txn in s.idle { mdb_txn_abort(txn) }
                s.idle.removeAll(keepingCapacity: true)
                return try body()
            }
            if let done { return done }
            usleep(20)
        }
    }

    /// Frees every pooled transaction; called before `mdb_env_close`.
    func drain() {
        let all = state.withLock { s -> [OpaquePointer] in
            defer { s.idle.removeAll() }
            return s.idle
        }
        for txn in all { mdb_txn_abort(txn) }
    }
}
