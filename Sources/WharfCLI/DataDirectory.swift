import ArgumentParser
import Foundation
import WharfStorage

/// An existing cache folder, opened by an offline tool (`wharf verify`, `wharf gc`).
///
/// A tool that changes the folder opens it `locked`: it then holds the folder's ``DataDirectoryLock``
/// and is refused while a server (or another tool) holds it, since a running server's fill that is
/// between its rename and its index commit could be taken for an orphan. A read-only run (`--dry-run`)
/// needs no lock; LMDB coordinates its reader with a running server's writer.
struct DataDirectory {
    let layout: CacheLayout
    let index: CacheIndex
    let store: BlobStore
    /// Held when opened `locked`; release it when done.
    let lock: DataDirectoryLock?

    init(path: String, locked: Bool) throws {
        self.layout = CacheLayout(root: path)
        guard FileManager.default.fileExists(atPath: self.layout.indexDirectory + "/data.mdb") else {
            throw ValidationError("no Wharf cache at '\(path)' (missing index/data.mdb)")
        }
        self.lock = locked ? try DataDirectoryLock(directory: self.layout.root) : nil
        self.index = try CacheIndex(directory: self.layout.indexDirectory)
        self.store = BlobStore(layout: self.layout)
    }
}
