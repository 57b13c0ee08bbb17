/// The single read-write transaction of an ``Environment``, valid only inside
/// the body passed to ``Environment/write(_:)``.
///
/// Sees its own uncommitted changes. Noncopyable and non-`Sendable`: LMDB's
/// writer lock belongs to the OS thread that began the transaction, so it must
/// not escape the (synchronous) body.
/// To pass one to a helper, declare the parameter `borrowing WriteTransaction`.
public struct WriteTransaction: ~Copyable {
    let core: TransactionCore

    init(core: TransactionCore) {
        self.core = core
    }

    /// Returns a copy of the value stored under `key`, or `nil` if absent.
    public func get(_ db: Database, _ key: [UInt8]) throws -> [UInt8]? {
        try core.get(db, key)
    }

    /// Calls `body` with the value stored under `key` without copying it;
    /// returns `nil` (without calling `body`) if the key is absent. The buffer
    /// is invalidated by any later write in this transaction.
    public func withValue<R>(_ db: Database, _ key: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R? {
        try core.withValue(db, key, body)
    }

    /// Visits entries in key order, starting at the first key `>= start`
    /// (or the first key when `start` is `nil` or empty). Return `false` from
    /// `body` to stop early. Do not modify `db` from inside `body`.
    public func forEach(
        _ db: Database,
        from start: [UInt8]? = nil,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try core.forEach(db, from: start, body)
    }

    /// Number of entries in `db`, including this transaction's changes.
    public func count(_ db: Database) throws -> Int {
        try core.count(db)
    }

    /// Stores `value` under `key`, replacing any existing value.
    /// Throws ``LMDBError/badValueSize`` for empty or over-long keys.
    public func put(_ db: Database, _ key: [UInt8], _ value: [UInt8]) throws {
        try core.put(db, key, value)
    }

    /// Removes `key`; returns `false` if it was not present.
    @discardableResult
    public func delete(_ db: Database, _ key: [UInt8]) throws -> Bool {
        try core.delete(db, key)
    }
}

@available(*, unavailable)
extension WriteTransaction: Sendable {}
