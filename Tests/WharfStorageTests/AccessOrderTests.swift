import Foundation
import LMDB
import OCIDistribution
import Synchronization
import Testing
import WharfClock
import WharfStorage

/// The `access` database that gives eviction its victims without scanning every blob record.
@Suite(.tags(.unit)) struct AccessOrderTests {
    static func digest(_ i: Int) -> Digest { Digest.sha256(of: Array("blob \(i)".utf8)) }

    static func folder() -> String { NSTemporaryDirectory() + "wharf-access-\(UUID().uuidString.prefix(8))" }

    /// Blob `i` was last accessed `1000 - i` seconds ago: blob 0 is the oldest.
    static func fill(_ index: CacheIndex, count: Int) throws {
        let now = index.clock.wallSeconds()
        try index.commitBlobs((0..<count).reversed().map { CacheIndex.BlobEntry(digest: Self.digest($0), size: 10, lastAccess: now - 1000 + UInt64($0)) })
    }

    @Test("a new index keeps its access order: oldest first, a flushed hit moves a blob to the back, removal drops it, exclusions are skipped")
    func maintainedByWrites() throws {
        let root = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let skip = Mutex<Duration>(.zero)
        let index = try CacheIndex(directory: root, clock: WharfClock(skip: { skip.withLock { $0 } }))
        #expect(try index.isAccessOrderComplete())
        try Self.fill(index, count: 50)
        #expect(try index.leastRecentlyUsed(limit: 3).map(\.digest) == [0, 1, 2].map(Self.digest))

        skip.withLock { $0 = .seconds(5) }
        index.touch(Self.digest(0))
        #expect(try index.flushAccessTimes() == 1)
        #expect(try index.leastRecentlyUsed(limit: 3).map(\.digest) == [1, 2, 3].map(Self.digest))
        #expect(try index.leastRecentlyUsed(limit: 50).last?.digest == Self.digest(0))  // the newest now, listed once
        #expect(try index.leastRecentlyUsed(limit: 100).count == 50)

        try index.removeBlob(Self.digest(1))
        #expect(try index.leastRecentlyUsed(limit: 2, excluding: [Self.digest(2)]).map(\.digest) == [3, 4].map(Self.digest))

        // A blob committed again (a re-fill) has one key, at its new time.
        try index.commitBlob(Self.digest(3), size: 10, link: nil)
        let all = try index.leastRecentlyUsed(limit: 100)
        #expect(all.count == 49)
        #expect(Set(all.map(\.digest)).count == 49)
        #expect(all.map(\.digest).suffix(2) == [0, 3].map(Self.digest))
    }

    @Test("an index made before the access order uses the full scan, then buildAccessOrder fills it and both agree")
    func builtForAnOlderIndex() throws {
        let root = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var expected: [Digest] = []
        do {
            let index = try CacheIndex(directory: root)
            try Self.fill(index, count: 300)
            expected = try index.leastRecentlyUsed(limit: 300).map(\.digest)
        }
        do {  // what an older Wharf left: blob records, no access keys, no completion mark
            let env = try Environment(path: root)
            let access = try env.database(named: "access"), meta = try env.database(named: "meta")
            try env.write { txn in
                var keys: [[UInt8]] = []
                try txn.forEach(access) { k, _ in keys.append(Array(k)); return true }
                for k in keys { try txn.delete(access, k) }
                try txn.delete(meta, Array("access-order-complete".utf8))
            }
            #expect(try env.count(access) == 0)
        }
        let index = try CacheIndex(directory: root)
        #expect(try !index.isAccessOrderComplete())
        #expect(try index.leastRecentlyUsed(limit: 300).map(\.digest) == expected)  // the full scan
        // A write before the build keeps its key up to date too.
        try index.removeBlob(expected[0])
        // A build stopped (a shutdown) before its last window leaves the order incomplete: still the full scan.
        #expect(try index.buildAccessOrder(window: 40, shouldStop: { true }) == 0)
        #expect(try !index.isAccessOrderComplete())
        #expect(try index.leastRecentlyUsed(limit: 300).map(\.digest) == Array(expected.dropFirst()))
        #expect(try index.buildAccessOrder(window: 40) == 299)  // several windows
        #expect(try index.isAccessOrderComplete())
        #expect(try index.leastRecentlyUsed(limit: 300).map(\.digest) == Array(expected.dropFirst()))
        #expect(try index.buildAccessOrder() == 0)
    }
}
