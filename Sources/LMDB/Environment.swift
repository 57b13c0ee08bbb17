import CLMDB

/// An LMDB environment: one directory holding a memory-mapped B+tree file
/// with up to `maxDatabases` named ``Database``s.
///
/// Thread-safe. Reads run concurrently on snapshot (MVCC) transactions that
/// are pooled and recycled (`mdb_txn_reset`/`mdb_txn_renew`); writes are
/// serialized by an in-process mutex. The environment is opened with
/// `MDB_NOTLS`, so a read transaction is not tied to an OS thread between
/// uses. Transaction bodies are synchronous and must not suspend.
///
/// Open a given directory at most once per process (an LMDB rule); the
/// environment is closed when the last reference goes away.
public final class Environment: @unchecked Sendable {
    /// Extra `mdb_env_open` flags. `MDB_NOTLS` is always set.
    public struct Options: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        /// `MDB_NOSYNC`: don't fsync on commit (a crash may lose recent
        /// commits but never corrupts the database). Call ``Environment/sync(force:)``
        /// to flush.
        public static let noSync = Options(rawValue: UInt32(MDB_NOSYNC))
        /// `MDB_NOMETASYNC`: fsync data but not the meta page on commit.
        public static let noMetaSync = Options(rawValue: UInt32(MDB_NOMETASYNC))
        /// `MDB_NORDAHEAD`: disable OS read-ahead (helps random reads of a
        /// database larger than RAM).
        public static let noReadAhead = Options(rawValue: UInt32(MDB_NORDAHEAD))
    }

    /// The raw `MDB_env *`. Only touched through LMDB's thread-safe entry points.
    let env: OpaquePointer
    /// LMDB's maximum key size in bytes (511 with the default build).
    public let maxKeySize: Int
    /// The directory this environment lives in.
    public let path: String

    private let readers: ReaderPool
    private let writeLock = Locked<Void>(())
    private let databases = Locked<[String: Database]>([:])

    /// Opens (creating the directory if needed) an environment at `path` with
    /// `MDB_NOTLS` and a large sparse map (256 GiB of address space by default;
    /// on Linux only pages actually written use disk).
    ///
    /// - Parameters:
    ///   - mapSize: initial maximum database size in bytes. A write that would
    ///     exceed it grows the map (see ``write(_:)``), so this is not a hard
    ///     limit; the default is simply made huge (it costs address space only).
    ///   - maxDatabases: maximum number of named databases.
    ///   - maxReaders: maximum number of simultaneous read transactions.
    ///   - options: extra durability / I/O flags.
    public init(
        path: String,
        mapSize: Int = 1 << 38,
        maxDatabases: UInt32 = 16,
        maxReaders: UInt32 = 1024,
        options: Options = []
    ) throws {
        try makeDirectories(path)

        var handle: OpaquePointer?
        try check(mdb_env_create(&handle))
        guard let handle else { throw LMDBError.outOfMemory }
        do {
            try check(mdb_env_set_mapsize(handle, mapSize))
            try check(mdb_env_set_maxdbs(handle, MDB_dbi(maxDatabases)))
            try check(mdb_env_set_maxreaders(handle, maxReaders))
            try check(mdb_env_open(handle, path, UInt32(MDB_NOTLS) | options.rawValue, 0o644))
            var dead: Int32 = 0
            _ = mdb_reader_check(handle, &dead)  // clear slots left by crashed processes
        } catch {
            mdb_env_close(handle)
            throw error
        }
        self.env = handle
        self.path = path
        self.maxKeySize = Int(mdb_env_get_maxkeysize(handle))
        self.readers = ReaderPool(env: handle, capacity: max(1, min(Int(maxReaders) / 2, 64)))
    }

    deinit {
        // No transaction can be live here: read/write bodies retain `self`.
        readers.drain()
        mdb_env_close(env)
    }

    /// Returns the named database, creating it (`MDB_CREATE`) on first use.
    /// Handles are cached, so repeated calls are cheap.
    ///
    /// Must not be called from inside a ``write(_:)`` body (it takes the write lock).
    public func database(named name: String) throws -> Database {
        if let cached = databases.withLock({ $0[name] }) { return cached }
        let database = try write { txn in
            // Another caller may have opened it while we waited for the write lock.
            if let cached = databases.withLock({ $0[name] }) { return cached }
            var dbi: MDB_dbi = 0
            try check(mdb_dbi_open(txn.core.txn, name, UInt32(MDB_CREATE), &dbi))
            return Database(dbi: dbi)
        }
        // Cached only after the commit: an aborted open leaves no handle behind.
        databases.withLock { $0[name] = database }
        return database
    }

    /// Runs `body` in a read-only snapshot transaction (`MDB_RDONLY`), which is
    /// always aborted (reset and pooled) afterwards, even if `body` throws.
    /// Do not call `read` or ``write(_:)`` inside `body`: while the map grows,
    /// new reads wait for the ones in flight (see ``write(_:)``).
    public func read<R>(_ body: (borrowing ReadTransaction) throws -> R) throws -> R {
        let txn = try readers.checkOut()
        defer { readers.checkIn(txn) }
        return try body(ReadTransaction(core: TransactionCore(txn: txn, maxKeySize: maxKeySize)))
    }

    /// Runs `body` in the read-write transaction and commits it if `body`
    /// returns; aborts it (leaving nothing behind) if `body` throws.
    ///
    /// When the map is full (`MDB_MAP_FULL` from a write in `body` or from the
    /// commit), the transaction is aborted, the map doubled and `body` run
    /// again in a new transaction, so `body` must not keep state from an
    /// earlier run (it may run more than once; what it returns is from the run
    /// that committed). Growing waits for the read transactions of this process
    /// in flight to end and holds off new ones meanwhile (for as long as those
    /// reads plus the remap take), so never call `write` from inside a
    /// ``read(_:)`` body, nor nest ``read(_:)`` calls.
    /// The same happens when another process grew the map (`MDB_MAP_RESIZED`).
    ///
    /// Writers are serialized by an in-process mutex and the call is fully
    /// synchronous: LMDB's writer lock belongs to the OS thread. Do not nest
    /// `write` calls or call ``database(named:)`` inside `body` (deadlock).
    public func write<R>(_ body: (borrowing WriteTransaction) throws -> R) throws -> R {
        return try writeLock.withLock { _ throws -> R in
            var growths = 0
            while true {
                do {
                    return try writeOnce(body)
                } catch let error as LMDBError where (error == .mapFull || error.code == MDB_MAP_RESIZED) && growths < 32 {
                    growths += 1
                    try readers.withNoActiveReaders {
                        // 0 adopts the size another process set; otherwise double ours.
                        try check(mdb_env_set_mapsize(env, error == .mapFull ? currentMapSize() * 2 : 0))
                    }
                }
            }
        }
    }

    /// One attempt of ``write(_:)``, with the write lock held.
    private func writeOnce<R>(_ body: (borrowing WriteTransaction) throws -> R) throws -> R {
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, 0, &txn))
        guard let txn else { throw LMDBError.outOfMemory }
        let result: R
        do {
            result = try body(WriteTransaction(core: TransactionCore(txn: txn, maxKeySize: maxKeySize)))
        } catch {
            mdb_txn_abort(txn)
            throw error
        }
        try check(mdb_txn_commit(txn))  // frees txn on success and failure
        return result
    }

    private func currentMapSize() -> Int {
        var info = MDB_envinfo()
        mdb_env_info(env, &info)
        return info.me_mapsize
    }

    /// Flushes data to disk (`mdb_env_sync`). With `force: false` the flush is
    /// skipped or made asynchronous according to the open flags.
    public func sync(force: Bool = true) throws {
        try check(mdb_env_sync(env, force ? 1 : 0))
    }

    /// Number of entries in `db` (in a fresh read snapshot).
    public func count(_ db: Database) throws -> Int {
        try read { try $0.count(db) }
    }

    /// The current map size in bytes (the maximum database size).
    public var mapSize: Int { currentMapSize() }
}
