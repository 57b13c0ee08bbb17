import ArgumentParser
import Foundation
import WharfStorage
import WharfText

/// `wharf gc`: makes the index and the files agree and drops tags that point nowhere.
struct GCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove orphan blob files, index entries without a file, and dangling tags.",
        discussion: """
            Orphan files are files under blobs/ that no index entry knows; entries without a file are \
            entries whose file is missing or of another size; dangling tags point at a manifest digest the \
            index does not hold. The stored byte total is recomputed. tmp/ is left alone (a server empties \
            it at start). It locks the data folder (wharf.lock) and is refused while a server uses it, since \
            a fill between its rename and its index commit could be taken for an orphan; --dry-run needs no lock.
            """
    )

    @Option(name: .customLong("data-dir"), help: "Cache folder (blobs, tmp, LMDB index).")
    var dataDirectory = "./data"

    @Flag(name: .customLong("dry-run"), help: "Report what would be removed; change nothing.")
    var dryRun = false

    func run() throws {
        do {
            try self.collect()
        } catch {
            FileHandle.standardError.write(Data("wharf gc: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }

    private func collect() throws {
        let data = try DataDirectory(path: self.dataDirectory, locked: !self.dryRun)
        defer { data.lock?.release() }
        let reconciler = CacheReconciler(index: data.index, store: data.store)
        var report = CacheReconciler.Report()
        try reconciler.dropEntriesWithoutFiles(dryRun: self.dryRun, into: &report)
        try reconciler.removeOrphanFiles(dryRun: self.dryRun, modifiedBefore: nil, isInUse: { _ in false }, into: &report)
        let tags = try data.index.removeDanglingTags(dryRun: self.dryRun)
        let verb = self.dryRun ? "found" : "removed"
        print("entries without a matching file: \(report.entriesDropped) (\(ByteCount.string(report.bytesDropped))) \(verb)")
        print("orphan files: \(report.orphansRemoved) (\(ByteCount.string(report.orphanBytes))) \(verb)")
        print("dangling tags: \(tags) \(verb)")
        if report.foreignFiles > 0 { print("files under blobs/ not named by a digest, left alone: \(report.foreignFiles)") }
        if !self.dryRun {
            let total = try data.index.recomputeBlobBytes()
            if let before = total.before, before != total.after {
                print("stored byte total corrected from \(before) to \(total.after)")
            }
        }
        let counts = try data.index.counts()
        print("cache: \(counts.blobs) blobs, \(ByteCount.string(data.index.blobBytes)), \(counts.manifests) manifests, \(counts.tags) tags")
    }
}
