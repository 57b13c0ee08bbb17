import ArgumentParser
import Foundation
import OCIDistribution
import WharfStorage

/// `wharf verify`: re-hashes cached blobs and removes the ones that do not match their digest.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Re-hash cached blobs; remove (index entry and file) any that do not match their digest.",
        discussion: """
            Exit status: 0 when every checked blob is intact, 1 when corrupt or missing blobs were found \
            (and removed, unless --dry-run: the next pull fetches them again), 2 when the check could not run. Removing locks \
            the data folder (wharf.lock), so it is refused while a server uses it; --dry-run only reports, \
            needs no lock and can run beside a server.
            """
    )

    @Option(name: .customLong("data-dir"), help: "Cache folder (blobs, tmp, LMDB index).")
    var dataDirectory = "./data"

    @Option(help: "Check N blobs picked at random instead of all.")
    var sample: Int?

    @Option(help: "Check only this blob (sha256:…).")
    var digest: String?

    @Flag(name: .customLong("dry-run"), help: "Report bad blobs; remove nothing (no lock: runs beside a server).")
    var dryRun = false

    func validate() throws {
        if self.sample != nil, self.digest != nil { throw ValidationError("use --sample or --digest, not both") }
        if let sample, sample < 1 { throw ValidationError("--sample must be at least 1") }
        if let digest, (try? Digest(parsing: digest)) == nil { throw ValidationError("--digest must look like sha256:<64 hex>") }
    }

    func run() throws {
        let bad: Int
        do {
            bad = try self.check()
        } catch let exit as ExitCode {
            throw exit
        } catch {
            FileHandle.standardError.write(Data("wharf verify: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if bad > 0 { throw ExitCode(1) }
    }

    /// Checks the selected blobs; returns how many were bad (and removed, unless a dry run).
    private func check() throws -> Int {
        let data = try DataDirectory(path: self.dataDirectory, locked: !self.dryRun)
        defer { data.lock?.release() }
        let scrubber = BlobScrubber(index: data.index, store: data.store)
        let selected = try self.selection(data.index)
        guard !selected.isEmpty else {
            print(self.digest.map { "\($0) is not in the cache" } ?? "the cache is empty")
            return 0
        }
        let progress = ProgressReporter(total: selected.count, totalBytes: selected.reduce(0) { $0 + $1.record.size })
        var bad = 0
        var unsupported = 0
        for (digest, record) in selected {
            let verdict = scrubber.check(digest, record: record) { progress.advance(bytes: $0) }
            progress.itemDone()
            let problem: String
            switch verdict {
            case .intact: continue
            case .unsupported:
                unsupported += 1
                continue
            case .missing: problem = "file missing"
            case .wrongSize(let size): problem = "file has \(size) bytes, the index says \(record.size)"
            case .corrupt(let actual): problem = "content hashes to sha256:\(actual)"
            }
            if !self.dryRun { try scrubber.remove(digest) }
            bad += 1
            progress.message("corrupt \(digest): \(problem)\(self.dryRun ? "" : "; removed")")
        }
        progress.finish()
        let outcome = "\(bad) corrupt or missing" + (self.dryRun ? " (dry run, kept)" : ", removed")
        var summary = "verified \(selected.count) blobs: \(bad == 0 ? "all intact" : outcome)"
        if unsupported > 0 { summary += " (\(unsupported) not SHA-256, skipped)" }
        print(summary)
        return bad
    }

    /// The blobs to check: one, a random sample (reservoir), or all, in key order.
    private func selection(_ index: CacheIndex) throws -> [(digest: Digest, record: BlobRecord)] {
        if let raw = self.digest {
            let d = try Digest(parsing: raw)
            return try index.blob(d).map { [(d, $0)] } ?? []
        }
        var picked: [(digest: Digest, record: BlobRecord)] = []
        var seen = 0
        var after: Digest?
        while true {
            let batch = try index.blobs(after: after, limit: 10_000)
            guard let last = batch.last else { break }
            after = last.digest
            for entry in batch {
                seen += 1
                guard let n = self.sample else {
                    picked.append(entry)
                    continue
                }
                if picked.count < n {
                    picked.append(entry)
                } else {
                    let slot = Int.random(in: 0..<seen)
                    if slot < n { picked[slot] = entry }
                }
            }
        }
        return picked
    }
}
