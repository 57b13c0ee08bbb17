import CLMDB

/// A handle to one named database (`MDB_dbi`) inside an ``Environment``.
///
/// Obtain one with ``Environment/database(named:)``. The handle is a plain
/// integer: cheap to copy, safe to share across tasks, and valid for the
/// lifetime of the environment that opened it.
public struct Database: Sendable, Hashable {
    let dbi: MDB_dbi

    init(dbi: MDB_dbi) {
        self.dbi = dbi
    }
}
