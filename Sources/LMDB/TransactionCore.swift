import CLMDB

/// The operations shared by ``ReadTransaction`` and ``WriteTransaction``,
/// over a raw `MDB_txn *`. Internal; never escapes a transaction body.
struct TransactionCore {
    let txn: OpaquePointer
    let maxKeySize: Int

    /// Validates `key` and calls `body` with an `MDB_val` pointing at its bytes (no copy).
    @inline(__always)
    func withKey<R>(_ key: [UInt8], _ body: (inout MDB_val) throws -> R) throws -> R {
        guard !key.isEmpty, key.count <= maxKeySize else {
            throw LMDBError(
                code: MDB_BAD_VALSIZE,
                detail: "key is \(key.count) bytes; LMDB keys must be 1...\(maxKeySize) bytes")
        }
        return try key.withUnsafeBytes { buffer in
            var val = MDB_val(mv_size: buffer.count, mv_data: UnsafeMutableRawPointer(mutating: buffer.baseAddress))
            return try body(&val)
        }
    }

    func withValue<R>(_ db: Database, _ key: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R? {
        try withKey(key) { k in
            var data = MDB_val()
            let rc = mdb_get(txn, db.dbi, &k, &data)
            if rc == MDB_NOTFOUND { return nil }
            try check(rc)
            return try body(UnsafeRawBufferPointer(start: data.mv_data, count: data.mv_size))
        }
    }

    func get(_ db: Database, _ key: [UInt8]) throws -> [UInt8]? {
        try withValue(db, key) { Array($0) }
    }

    func forEach(
        _ db: Database,
        from start: [UInt8]?,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, db.dbi, &cursor))
        defer { mdb_cursor_close(cursor) }

        var key = MDB_val()
        var data = MDB_val()
        var rc: Int32
        if let start, !start.isEmpty {
            rc = try withKey(start) { k in
                let rc = mdb_cursor_get(cursor, &k, &data, MDB_SET_RANGE)
                key = k  // on success LMDB points `k` at the stored key
                return rc
            }
        } else {
            rc = mdb_cursor_get(cursor, &key, &data, MDB_FIRST)
        }
        while rc == 0 {
            let keepGoing = try body(
                UnsafeRawBufferPointer(start: key.mv_data, count: key.mv_size),
                UnsafeRawBufferPointer(start: data.mv_data, count: data.mv_size))
            if !keepGoing { return }
            rc = mdb_cursor_get(cursor, &key, &data, MDB_NEXT)
        }
        if rc != MDB_NOTFOUND { throw LMDBError(code: rc) }
    }

    func count(_ db: Database) throws -> Int {
        var stat = MDB_stat()
        try check(mdb_stat(txn, db.dbi, &stat))
        return Int(stat.ms_entries)
    }

    func put(_ db: Database, _ key: [UInt8], _ value: [UInt8]) throws {
        try withKey(key) { k in
            try value.withUnsafeBytes { buffer in
                var data = MDB_val(mv_size: buffer.count, mv_data: UnsafeMutableRawPointer(mutating: buffer.baseAddress))
                try check(mdb_put(txn, db.dbi, &k, &data, 0))
            }
        }
    }

    func delete(_ db: Database, _ key: [UInt8]) throws -> Bool {
        try withKey(key) { k in
            let rc = mdb_del(txn, db.dbi, &k, nil)
            if rc == MDB_NOTFOUND { return false }
            try check(rc)
            return true
        }
    }
}
