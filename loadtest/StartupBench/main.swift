// wharf-startup-bench: how long Wharf takes to start on an index of 1,000,000 blobs, and what the
// background work it does later (LRU victim scan, eviction batch, index ↔ disk check) costs.
//   swift run -c release wharf-startup-bench [ENTRIES]
import AsyncHTTPClient
import Foundation
import Logging
import OCIDistribution
import WharfClock
import WharfMirror
import WharfStorage
import WharfUpstream

/// Digest-shaped keys from SplitMix64, so generating a million costs nothing next to LMDB.
func digest(_ i: Int) -> Digest {
    var h = UInt64(truncatingIfNeeded: i) &* 0x9E37_79B9_7F4A_7C15
    var hex = ""
    for _ in 0..<4 {
        h = (h ^ (h >> 31)) &* 0xBF58_476D_1CE4_E5B9
        let part = String(h, radix: 16)
        hex += String(repeating: "0", count: 16 - part.count) + part
    }
    return Digest(sha256Hex: hex)
}

func milliseconds(_ d: Duration) -> String {
    String(format: "%.1f ms", Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15)
}

func time<T>(_ body: () throws -> T) rethrows -> (T, Duration) {
    let start = ContinuousClock.now
    let result = try body()
    return (result, ContinuousClock.now - start)
}

/// Fills a fresh index with `count` blob records (random sizes and last-access times).
func buildIndex(at root: String, count: Int) throws -> Duration {
    let layout = CacheLayout(root: root)
    try layout.createDirectories()
    let index = try CacheIndex(directory: layout.indexDirectory)
    let now = index.clock.wallSeconds()
    var rng = SystemRandomNumberGenerator()
    let (_, took) = try time {
        for start in stride(from: 0, to: count, by: 50_000) {
            let batch = (start..<min(start + 50_000, count)).map { i in
                CacheIndex.BlobEntry(digest: digest(i), size: Int64.random(in: 1_000...64_000_000, using: &rng),
                                     lastAccess: now - UInt64.random(in: 0...30 * 86_400, using: &rng))
            }
            try index.commitBlobs(batch)
        }
    }
    return took
}

func run() async throws {
    let entries = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 1_000_000
    let base = NSTemporaryDirectory() + "wharf-startup-bench-\(getpid())"
    try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: base) }
    var logger = Logger(label: "bench")
    logger.logLevel = .error
    let http = UpstreamHTTPClients.make()
    let upstream = try UpstreamConfiguration(url: "http://127.0.0.1:9")
    let limits = try CacheLimits(maxBytes: 1 << 50)

    let big = base + "/big"
    print("building an index of \(entries) blobs: \(milliseconds(try buildIndex(at: big, count: entries)))")
    for i in 0..<100 { _ = FileManager.default.createFile(atPath: "\(big)/tmp/leftover-\(i).part", contents: Data(count: 4096)) }

    // The startup path: open the index (stored byte total, no scan), empty tmp/, wire the mirror.
    var opens: [Duration] = []
    for _ in 0..<5 {
        let (mirror, took) = try time { try Mirror(dataDirectory: big, upstream: upstream, httpClients: http, logger: logger, limits: limits) }
        let count = try mirror.index.counts().blobs
        precondition(count == entries && mirror.budget.indexedBytes > 0)
        opens.append(took)
    }
    print("Mirror.init (startup path) with \(entries) entries: first \(milliseconds(opens[0])), best of 5 \(milliseconds(opens.min()!))")

    let index = try CacheIndex(directory: big + "/index")
    let (_, sum) = try time { try index.recomputeBlobBytes() }
    print("adding up all \(entries) records (what startup avoids by storing the total): \(milliseconds(sum))")
    let (_, lru) = try time { try index.leastRecentlyUsed(limit: Evictor.batchSize) }
    print("LRU victim scan, oldest \(Evictor.batchSize) of \(entries): \(milliseconds(lru))")

    let small = base + "/small"
    let smallCount = 100_000
    _ = try buildIndex(at: small, count: smallCount)
    let smallIndex = try CacheIndex(directory: small + "/index")
    var scans: [Duration] = []
    for _ in 0..<5 { scans.append(try time { try smallIndex.leastRecentlyUsed(limit: Evictor.batchSize) }.1) }
    print("LRU victim scan, oldest \(Evictor.batchSize) of \(smallCount): best of 5 \(milliseconds(scans.min()!))")
    let victims = try smallIndex.leastRecentlyUsed(limit: Evictor.batchSize).map(\.digest)
    let (_, delete) = try time { try smallIndex.removeBlobs(victims) }
    print("removing \(victims.count) entries in one write transaction: \(milliseconds(delete))")
    let reconciler = CacheReconciler(index: smallIndex, store: BlobStore(layout: CacheLayout(root: small)))
    var report = CacheReconciler.Report()
    let (_, check) = try time { try reconciler.dropEntriesWithoutFiles(dryRun: false, into: &report) }
    print("background index → disk check of \(report.entriesChecked) entries (every file missing, all dropped): \(milliseconds(check))")
    try await http.shutdown()
}

try await run()
