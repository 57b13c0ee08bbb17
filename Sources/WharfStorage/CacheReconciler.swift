#if canImport(Glibc)
import Glibc
#endif
import OCIDistribution

/// Makes the index and the files under `blobs/` agree after a crash or outside damage: drops index
/// entries whose file is missing or has another size, and removes files no entry knows.
///
/// Works in batches of short transactions and stats one file per entry, so it belongs in the
/// background (the server runs it after it is listening; `wharf gc` runs it offline). The request
/// path never depends on it: a hit re-checks its file and falls back to a fill.
public struct CacheReconciler: Sendable {
    /// What one run found (and, unless it was a dry run, fixed).
    public struct Report: Sendable, CustomStringConvertible {
        public var entriesChecked = 0
        public var entriesDropped = 0
        public var bytesDropped: Int64 = 0
        public var filesChecked = 0
        public var orphansRemoved = 0
        public var orphanBytes: Int64 = 0
        /// Files under `blobs/` whose name is not a digest in its right folder: left alone.
        public var foreignFiles = 0

        public init() {}

        public var description: String {
            "checked \(self.entriesChecked) entries and \(self.filesChecked) files; "
                + "\(self.entriesDropped) entries without a matching file (\(self.bytesDropped) bytes), "
                + "\(self.orphansRemoved) orphan files (\(self.orphanBytes) bytes), \(self.foreignFiles) foreign files"
        }
    }

    public let index: CacheIndex
    public let store: BlobStore
    public let batchSize: Int

    public init(index: CacheIndex, store: BlobStore, batchSize: Int = 1000) {
        self.index = index
        self.store = store
        self.batchSize = batchSize
    }

    /// Index → disk. An entry is dropped only if, inside the write transaction that drops it, its
    /// file is still missing or of the wrong size (a fill may have just put it back). Returns early,
    /// between batches, once `shouldStop` says so (a server shutting down).
    public func dropEntriesWithoutFiles(dryRun: Bool, into report: inout Report, shouldStop: () -> Bool = { false }) throws {
        var after: Digest?
        while !shouldStop() {
            let batch = try self.index.blobs(after: after, limit: self.batchSize)
            guard let last = batch.last else { return }
            after = last.digest
            report.entriesChecked += batch.count
            let bad = batch.filter { !self.fileMatches($0.digest, $0.record) }
            guard !bad.isEmpty else { continue }
            if dryRun {
                report.entriesDropped += bad.count
                report.bytesDropped += bad.reduce(0) { $0 + $1.record.size }
                continue
            }
            let dropped = try self.index.removeBlobs(bad.map(\.digest)) { !self.fileMatches($0, $1) }
            report.entriesDropped += dropped.count
            report.bytesDropped += dropped.reduce(0) { $0 + $1.record.size }
        }
    }

    /// Disk → index. Removes digest-named files without an entry, except those `isInUse` claims and,
    /// when `modifiedBefore` (nanoseconds since the epoch) is given, those modified at or after it:
    /// a running server passes its start time, so a fill between rename and commit is never touched.
    /// Returns early, between folders, once `shouldStop` says so.
    public func removeOrphanFiles(
        dryRun: Bool, modifiedBefore: Int64?, isInUse: (Digest) -> Bool, into report: inout Report, shouldStop: () -> Bool = { false }
    ) throws {
        let root = self.store.layout.blobsDirectory
        for algorithm in FileSystemCalls.listDirectory(root) {
            for prefix in FileSystemCalls.listDirectory(root + "/" + algorithm) {
                if shouldStop() { return }
                let folder = root + "/" + algorithm + "/" + prefix
                var named: [Digest] = []
                for name in FileSystemCalls.listDirectory(folder) {
                    report.filesChecked += 1
                    if let d = try? Digest(parsing: algorithm + ":" + name), d.hex.hasPrefix(prefix), prefix.count == 2 {
                        named.append(d)
                    } else {
                        report.foreignFiles += 1
                    }
                }
                for digest in try self.index.unindexed(named) where !isInUse(digest) {
                    let path = self.store.layout.blobPath(digest)
                    guard let status = FileSystemCalls.fileStatus(path) else { continue }
                    if let cutoff = modifiedBefore, status.modifiedNanoseconds >= cutoff { continue }
                    if !dryRun {
                        guard self.store.remove(digest) else { continue }
                    }
                    report.orphansRemoved += 1
                    report.orphanBytes += status.size
                }
            }
        }
    }

    private func fileMatches(_ digest: Digest, _ record: BlobRecord) -> Bool {
        FileSystemCalls.fileSize(self.store.layout.blobPath(digest)) == record.size
    }
}
