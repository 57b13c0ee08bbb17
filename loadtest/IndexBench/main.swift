// wharf-index-bench: LMDB lookup latency with 1,000,000 digest-shaped keys (target p99 <= 20 µs).
//   swift run -c release wharf-index-bench
import Foundation
import LMDB

func run() throws {
    let dir = NSTemporaryDirectory() + "wharf-index-bench-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let env = try Environment(path: dir, options: [.noSync])
    let db = try env.database(named: "bench")
    let entries = 1_000_000
    let value = [UInt8](repeating: 0xAB, count: 120)  // ~ a blob index record

    func key(_ i: Int) -> [UInt8] {
        // "sha256:" + 64 hex chars, like a blob digest
        var h = UInt64(truncatingIfNeeded: i) &* 0x9E37_79B9_7F4A_7C15
        var hex = "sha256:"
        for _ in 0..<4 {
            h = (h ^ (h >> 31)) &* 0xBF58_476D_1CE4_E5B9
            hex += String(repeating: "0", count: 16 - String(h, radix: 16).count) + String(h, radix: 16)
        }
        return Array(hex.utf8)
    }
    let keys = (0..<entries).map(key)

    let loadStart = ContinuousClock.now
    for batch in stride(from: 0, to: entries, by: 50_000) {
        try env.write { txn in
            for i in batch..<min(batch + 50_000, entries) { try txn.put(db, keys[i], value) }
        }
    }
    let loadTime = ContinuousClock.now - loadStart
    guard try env.count(db) == entries else { fatalError("load lost entries") }

    var generator = SystemRandomNumberGenerator()
    let samples = 200_000
    var nanos = [Int64](repeating: 0, count: samples)
    var found = 0
    for s in 0..<samples {
        let k = keys[Int.random(in: 0..<entries, using: &generator)]
        let t0 = ContinuousClock.now
        let size = try env.read { try $0.withValue(db, k) { $0.count } }
        let dt = ContinuousClock.now - t0
        nanos[s] = dt.components.attoseconds / 1_000_000_000 + dt.components.seconds * 1_000_000_000
        if size == value.count { found += 1 }
    }
    guard found == samples else { fatalError("lookups missed entries") }
    nanos.sort()
    func pct(_ p: Double) -> Double { Double(nanos[min(samples - 1, Int(Double(samples) * p))]) / 1000 }
    let summary = String(
        format: "LMDB lookup, %d entries (load %@): p50 %.2f µs, p99 %.2f µs, p99.9 %.2f µs, max %.2f µs",
        entries, "\(loadTime)", pct(0.50), pct(0.99), pct(0.999), Double(nanos[samples - 1]) / 1000)
    print(summary)
    print(pct(0.99) <= 20 ? "p99 within the 20 µs target" : "p99 ABOVE the 20 µs target")
}

try run()
