import ArgumentParser
import Foundation
import WharfStorage

/// An existing cache folder, opened by an offline tool (`wharf verify`, `wharf gc`).
///
/// These tools are meant for a folder no server is using. LMDB itself copes with a server running at
/// the same time (its lock file coordinates readers and the one writer across processes), so nothing
/// gets corrupted; but a running server's fill that is between its rename and its index commit can be
/// taken for an orphan, and the server's running byte total is refreshed only on its next index write.
struct DataDirectory {
    let layout: CacheLayout
    let index: CacheIndex
    let store: BlobStore

    init(path: String) throws {
        self.layout = CacheLayout(root: path)
        guard FileManager.default.fileExists(atPath: self.layout.indexDirectory + "/data.mdb") else {
            throw ValidationError("no Wharf cache at '\(path)' (missing index/data.mdb)")
        }
        self.index = try CacheIndex(directory: self.layout.indexDirectory)
        self.store = BlobStore(layout: self.layout)
    }
}

/// Human-readable byte counts: `512 B`, `1.5 MiB`, `200.0 GiB`.
enum ByteFormat {
    static func string(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f ", value) + units[unit]
    }
}
