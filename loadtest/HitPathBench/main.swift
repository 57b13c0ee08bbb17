// wharf-hitpath-bench: what last-access tracking costs a cache hit.
// A hit does an index lookup and `touch` (an in-memory map under a lock); a background flush writes
// the batch in one LMDB transaction once a second. This measures each part with 100,000 cached blobs.
//   swift run -c release wharf-hitpath-bench
import Foundation
import OCIDistribution
import WharfStorage

func nanos(_ d: Duration) -> Double { Double(d.components.seconds) * 1e9 + Double(d.components.attoseconds) / 1e9 }

func run() throws {
    let dir = NSTemporaryDirectory() + "wharf-hitpath-bench-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let index = try CacheIndex(directory: dir)
    let count = 100_000
    let digests = (0..<count).map { Digest.sha256(of: Array("blob-\($0)".utf8)) }
    try index.commitBlobs(digests.map { .init(digest: $0, size: 4096, lastAccess: 1) })

    let operations = 1_000_000
    var generator = SystemRandomNumberGenerator()
    let picks = (0..<operations).map { _ in digests[Int.random(in: 0..<count, using: &generator)] }

    var found = 0
    var t0 = ContinuousClock.now
    for d in picks where try index.blob(d) != nil { found += 1 }
    let lookup = nanos(ContinuousClock.now - t0) / Double(operations)
    guard found == operations else { fatalError("lookups missed entries") }

    t0 = ContinuousClock.now
    for d in picks { index.touch(d) }
    let touch = nanos(ContinuousClock.now - t0) / Double(operations)

    t0 = ContinuousClock.now
    let written = try index.flushAccessTimes()
    let flush = ContinuousClock.now - t0

    // Contended: 2 threads touching at once (this machine has 2 cores).
    t0 = ContinuousClock.now
    DispatchQueue.concurrentPerform(iterations: 2) { half in
        for d in picks[(half * operations / 2)..<((half + 1) * operations / 2)] { index.touch(d) }
    }
    let contended = nanos(ContinuousClock.now - t0) / Double(operations)

    print(String(format: "index lookup (hit path):       %7.0f ns/op", lookup))
    print(String(format: "touch (last-access, 1 thread): %7.0f ns/op", touch))
    print(String(format: "touch (2 threads contending):  %7.0f ns/op (wall time per op)", contended))
    print("flush of \(written) pending access times in one write transaction: \(flush)")
}

try run()
