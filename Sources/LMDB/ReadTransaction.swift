/// A read-only snapshot of an ``Environment``, valid only inside the body
/// passed to ``Environment/read(_:)``.
///
/// Noncopyable and non-`Sendable`: it cannot escape the body or cross to
/// another task. Buffers handed to `withValue`/`forEach` point straight into
/// the memory map and are valid only inside their closure.
/// To pass one to a helper, declare the parameter `borrowing ReadTransaction`.
public struct ReadTransaction: ~Copyable {
    let core: TransactionCore

    init(core: TransactionCore) {
        self.core = core
    }

    /// Returns a copy of the value stored under `key`, or `nil` if absent.
    public func get(_ db: Database, _ key: [UInt8]) throws -> [UInt8]? {
        try core.get(db, key)
    }

    /// Calls `body` with the value stored under `key` without copying it;
    /// returns `nil` (without calling `body`) if the key is absent.
    public func withValue<R>(_ db: Database, _ key: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R? {
        try core.withValue(db, key, body)
    }

    /// Visits entries in key order, starting at the first key `>= start`
    /// (or the first key when `start` is `nil` or empty). Return `false` from
    /// `body` to stop early.
    public func forEach(
        _ db: Database,
        from start: [UInt8]? = nil,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try core.forEach(db, from: start, body)
    }

    /// Number of entries in `db` as of this snapshot.
    public func count(_ db: Database) throws -> Int {
        try core.count(db)
    }
}

@available(*, unavailable)
extension ReadTransaction: Sendable {}
