import LMDB
import Synchronization
import Testing

@Suite(.tags(.unit)) struct ConcurrencyTests {
    /// 64 reader tasks check snapshot consistency while one writer commits
    /// 500 transactions. Each commit adds `item-i` and sets `n` to i + 1, so
    /// every snapshot must satisfy `count == n + 1` and contain `item-(n-1)`.
    @Test func sixtyFourReadersWithOneWriter() async throws {
        let dir = TemporaryDirectory()
        let env = try Environment(path: dir.path, options: [.noSync])
        let db = try env.database(named: "concurrent")
        let writes = 500
        let progress = Progress()

        try env.write { try $0.put(db, "n".bytes, encode(0)) }

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { progress.done.store(true, ordering: .releasing) }
                for i in 0..<writes {
                    try env.write { txn throws in
                        try txn.put(db, "item-\(i)".bytes, encode(i))
                        try txn.put(db, "n".bytes, encode(i + 1))
                    }
                    await Task.yield()
                }
            }
            for _ in 0..<64 {
                group.addTask {
                    var reads = 0
                    var lastSeen = 0
                    repeat {
                        let n = try env.read { txn -> Int in
                            let n = try txn.withValue(db, "n".bytes, decode) ?? -1
                            #expect(try txn.count(db) == n + 1)
                            if n > 0 {
                                #expect(try txn.withValue(db, "item-\(n - 1)".bytes, decode) == n - 1)
                            }
                            #expect(try txn.get(db, "item-\(n)".bytes) == nil)
                            return n
                        }
                        #expect(n >= lastSeen)  // snapshots never go backwards
                        if n > 0 && n < writes { progress.sawIntermediate.store(true, ordering: .relaxed) }
                        lastSeen = n
                        reads += 1
                        await Task.yield()
                    } while !progress.done.load(ordering: .acquiring)
                    progress.reads.add(reads, ordering: .relaxed)
                }
            }
            try await group.waitForAll()
        }

        #expect(try env.count(db) == writes + 1)
        let totalReads = progress.reads.load(ordering: .relaxed)
        let overlapped = progress.sawIntermediate.load(ordering: .relaxed)
        #expect(totalReads >= 64)
        #expect(overlapped)  // some reads ran while the writer was mid-way
    }

    /// More simultaneous readers than the transaction pool keeps idle.
    @Test func manyShortReadsFromManyTasks() async throws {
        let dir = TemporaryDirectory()
        let env = try Environment(path: dir.path, maxReaders: 256)
        let db = try env.database(named: "pool")
        try env.write { txn throws in
            for i in 0..<100 { try txn.put(db, "k\(i)".bytes, encode(i)) }
        }
        try await withThrowingTaskGroup(of: Int.self) { group in
            for t in 0..<200 {
                group.addTask {
                    var sum = 0
                    for i in 0..<200 {
                        sum += try env.read { try $0.withValue(db, "k\((t + i) % 100)".bytes, decode) } ?? 0
                    }
                    return sum
                }
            }
            var total = 0
            for try await sum in group { total += sum }
            #expect(total == 200 * 2 * (0..<100).reduce(0, +))
        }
    }
}

/// Shared between the writer and reader tasks.
private final class Progress: Sendable {
    let done = Atomic<Bool>(false)
    let reads = Atomic<Int>(0)
    let sawIntermediate = Atomic<Bool>(false)
}

private func encode(_ value: Int) -> [UInt8] {
    withUnsafeBytes(of: UInt64(value).littleEndian) { Array($0) }
}

private func decode(_ buffer: UnsafeRawBufferPointer) -> Int {
    Int(UInt64(littleEndian: buffer.loadUnaligned(as: UInt64.self)))
}
