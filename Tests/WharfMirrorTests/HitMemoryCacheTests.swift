import Foundation
import NIOCore
import OCIDistribution
import Testing
import WharfStorage
@testable import WharfMirror

/// ``HitMemoryCache``: kept responses are served only while their blob file is unchanged, and the
/// cache never holds more than its budget.
@Suite(.tags(.unit))
struct HitMemoryCacheTests {
    /// A blob store in a temporary folder: its removals are the changes the cache follows.
    final class Store {
        let root = NSTemporaryDirectory() + "wharf-memory-\(UUID().uuidString)"
        let store: BlobStore

        init() throws {
            let layout = CacheLayout(root: self.root)
            try layout.createDirectories()
            self.store = BlobStore(layout: layout)
        }

        deinit { try? FileManager.default.removeItem(atPath: self.root) }

        /// Records a change of `digest`'s file (removing a file that is not there still records it).
        func change(_ digest: Digest) { self.store.remove(digest) }
    }

    /// A digest whose first hex digit (its shard) is `shard`, distinct per `n`.
    static func digest(shard: Int, _ n: Int) -> Digest {
        Digest(sha256Hex: String(shard, radix: 16) + String(format: "%063x", n))
    }

    static func response(_ fill: UInt8, _ count: Int) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count)
        buffer.writeRepeatingByte(fill, count: count)
        return buffer
    }

    @Test("a kept response comes back whole for its size; another size is a miss")
    func keepsAndServes() throws {
        let s = try Store()
        let cache = HitMemoryCache(budget: 16 << 20, changes: s.store.changes)
        let d = Self.digest(shard: 3, 1)
        let response = Self.response(0xAB, 5000)
        cache.store(response, for: d, bodySize: 4800, asOf: cache.mark)
        #expect(cache.response(for: d, bodySize: 4800) == response)
        #expect(cache.response(for: d, bodySize: 4801) == nil)
        #expect(cache.response(for: Self.digest(shard: 3, 2), bodySize: 4800) == nil)
        #expect(cache.usage.entries == 1 && cache.usage.bytes == response.storageCapacity)
    }

    @Test("removing or replacing the blob file drops its response, and only its")
    func changesDrop() throws {
        let s = try Store()
        let cache = HitMemoryCache(budget: 16 << 20, changes: s.store.changes)
        let a = Self.digest(shard: 1, 1), b = Self.digest(shard: 1, 2)
        cache.store(Self.response(1, 100), for: a, bodySize: 100, asOf: cache.mark)
        cache.store(Self.response(2, 100), for: b, bodySize: 100, asOf: cache.mark)
        s.change(a)
        #expect(cache.response(for: a, bodySize: 100) == nil)
        #expect(cache.response(for: b, bodySize: 100) == Self.response(2, 100))
        #expect(cache.usage.entries == 1)
    }

    @Test("a response read while any blob file changed is not kept")
    func changeDuringReadIsNotKept() throws {
        let s = try Store()
        let cache = HitMemoryCache(budget: 16 << 20, changes: s.store.changes)
        let d = Self.digest(shard: 2, 1)
        let mark = cache.mark  // taken before the index and the file were read
        s.change(Self.digest(shard: 9, 9))
        cache.store(Self.response(1, 100), for: d, bodySize: 100, asOf: mark)
        #expect(cache.response(for: d, bodySize: 100) == nil)
        cache.store(Self.response(1, 100), for: d, bodySize: 100, asOf: cache.mark)
        #expect(cache.response(for: d, bodySize: 100) != nil)
    }

    @Test("a reader further behind than the change log keeps drops everything")
    func lostLogDropsAll() throws {
        let s = try Store()
        let cache = HitMemoryCache(budget: 16 << 20, changes: s.store.changes)
        let kept = (0..<20).map { Self.digest(shard: $0 % 16, $0) }
        for d in kept { cache.store(Self.response(7, 200), for: d, bodySize: 200, asOf: cache.mark) }
        #expect(cache.usage.entries == 20)
        for n in 0..<600 { s.change(Self.digest(shard: 0, 10_000 + n)) }
        #expect(cache.response(for: kept[0], bodySize: 200) == nil)
        #expect(cache.usage.entries == 0 && cache.usage.bytes == 0)
    }

    @Test("the budget holds however many responses come, and one bigger than a shard is not kept")
    func bounded() throws {
        let s = try Store()
        let budget = 16 * 10_000  // 10,000 bytes per shard (of buffer storage, allocated in powers of two)
        let cache = HitMemoryCache(budget: budget, changes: s.store.changes)
        var random = SystemRandomNumberGenerator()
        for n in 0..<2_000 {
            let size = Int.random(in: 1...3_000, using: &random)
            let d = Self.digest(shard: Int.random(in: 0..<16, using: &random), n)
            cache.store(Self.response(UInt8(n % 256), size), for: d, bodySize: Int64(size), asOf: cache.mark)
            if n % 3 == 0 { _ = cache.response(for: d, bodySize: Int64(size)) }
            #expect(cache.usage.bytes <= budget)
        }
        #expect(cache.usage.entries > 16, "a full cache should still hold entries")
        let big = Self.digest(shard: 4, 99_999)
        cache.store(Self.response(1, 9_000), for: big, bodySize: 9_000, asOf: cache.mark)  // 16 KiB of storage
        #expect(cache.response(for: big, bodySize: 9_000) == nil)
    }

    @Test("a full shard evicts what was not served since the clock last passed, and keeps what was")
    func secondChance() throws {
        let s = try Store()
        let cost = Self.response(1, 1_000).storageCapacity  // buffers are allocated in powers of two
        let cache = HitMemoryCache(budget: 16 * 3 * cost, changes: s.store.changes)
        let a = Self.digest(shard: 5, 1), b = Self.digest(shard: 5, 2), c = Self.digest(shard: 5, 3), d = Self.digest(shard: 5, 4)
        for x in [a, b, c] { cache.store(Self.response(1, 1_000), for: x, bodySize: 1_000, asOf: cache.mark) }
        #expect(cache.response(for: a, bodySize: 1_000) != nil)  // served: a second chance
        cache.store(Self.response(1, 1_000), for: d, bodySize: 1_000, asOf: cache.mark)
        #expect(cache.response(for: a, bodySize: 1_000) != nil)
        #expect(cache.response(for: b, bodySize: 1_000) == nil)
        #expect(cache.response(for: c, bodySize: 1_000) != nil)
        #expect(cache.response(for: d, bodySize: 1_000) != nil)
    }

    @Test("loops storing, serving and changing files at once keep the budget and serve only whole responses")
    func concurrent() async throws {
        let s = try Store()
        let budget = 16 * 20_000
        let cache = HitMemoryCache(budget: budget, changes: s.store.changes)
        let store = s.store
        await withTaskGroup(of: Void.self) { group in
            for t in 0..<4 {
                group.addTask {
                    for n in 0..<3_000 {
                        let d = Self.digest(shard: n % 16, n % 200)
                        let size = 100 + (n % 200) * 7
                        if t == 3, n % 10 == 0 { store.remove(d); continue }
                        if let kept = cache.response(for: d, bodySize: Int64(size)) {
                            #expect(kept == Self.response(UInt8(n % 200), size))
                        } else {
                            cache.store(Self.response(UInt8(n % 200), size), for: d, bodySize: Int64(size), asOf: cache.mark)
                        }
                    }
                }
            }
        }
        #expect(cache.usage.bytes <= budget)
    }
}
