import CLMDB

/// An error reported by LMDB (or by this wrapper's own argument checks).
///
/// `code` is an LMDB return code (`MDB_*`, negative) or a POSIX `errno` value
/// (positive). Two errors are equal when their codes are equal; `detail` is
/// extra, human-readable context only.
public struct LMDBError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The LMDB or POSIX error code.
    public let code: Int32
    /// Optional context added by the wrapper (for example the offending key length).
    public let detail: String?

    /// Wraps an LMDB / POSIX return code.
    public init(code: Int32, detail: String? = nil) {
        self.code = code
        self.detail = detail
    }

    /// `mdb_strerror(code)`, followed by `detail` when present.
    public var description: String {
        let message = String(cString: mdb_strerror(code))
        guard let detail else { return message }
        return "\(message) (\(detail))"
    }

    public static func == (lhs: LMDBError, rhs: LMDBError) -> Bool {
        lhs.code == rhs.code
    }

    /// `MDB_MAP_FULL`: the environment's map size was reached.
    public static let mapFull = LMDBError(code: MDB_MAP_FULL)
    /// `MDB_READERS_FULL`: every reader slot is in use.
    public static let readersFull = LMDBError(code: MDB_READERS_FULL)
    /// `MDB_BAD_VALSIZE`: a key (or value) has an unsupported size. Thrown for
    /// empty keys and keys longer than ``Environment/maxKeySize``.
    public static let badValueSize = LMDBError(code: MDB_BAD_VALSIZE)
}

/// Throws `LMDBError` for any non-zero return code.
@inline(__always)
func check(_ rc: Int32) throws(LMDBError) {
    if rc != 0 { throw LMDBError(code: rc) }
}
