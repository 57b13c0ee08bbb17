import Foundation
import LMDB
import Synchronization
import Testing

/// A full map grows in place: writes keep succeeding without reopening the environment.
@Suite(.tags(.unit)) struct MapGrowthTests {
    static func value(_ i: Int) -> [UInt8] { [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 1000) }
    static func key(_ i: Int) -> [UInt8] { Array("key-\(i)".utf8) }

    @Test func writesPastAFullMapGrowIt() throws {
        let dir = TemporaryDirectory()
        let env = try Environment(path: dir.path, mapSize: 256 * 1024)
        let db = try env.database(named: "data")
        let initial = env.mapSize
        // 4,000 records of 1 kB (about 4 MB with pages): small transactions and one big one.
        for batch in 0..<30 {
            try env.write { txn in
                for i in (batch * 100)..<(batch * 100 + 100) { try txn.put(db, Self.key(i), Self.value(i)) }
            }
        }
        try env.write { txn in
            for i in 3000..<4000 { try txn.put(db, Self.key(i), Self.value(i)) }
        }
        #expect(env.mapSize > initial)
        #expect(env.mapSize >= 4000 * 1000)
        #expect(try env.count(db) == 4000)
        try env.read { txn throws in
            for i in stride(from: 0, to: 4000, by: 7) { #expect(try txn.get(db, Self.key(i)) == Self.value(i)) }
        }
    }

    @Test func readersOnOtherThreadsKeepReadingWhileTheMapGrows() throws {
        let dir = TemporaryDirectory()
        let env = try Environment(path: dir.path, mapSize: 128 * 1024)
        let db = try env.database(named: "data")
        try env.write { txn in try txn.put(db, Self.key(-1), Self.value(7)) }
        let stop = Atomic<Bool>(false)
        let reads = Atomic<Int>(0)
        let wrong = Atomic<Int>(0)
        let exited = DispatchSemaphore(value: 0)
        for _ in 0..<2 {
            Thread.detachNewThread {
                while !stop.load(ordering: .relaxed) {
                    let ok = (try? env.read { txn in try txn.withValue(db, Self.key(-1)) { $0.elementsEqual(Self.value(7)) } }) ?? nil
                    if ok != true { wrong.add(1, ordering: .relaxed) }
                    reads.add(1, ordering: .relaxed)
                }
                exited.signal()
            }
        }
        defer {
            stop.store(true, ordering: .relaxed)
            exited.wait()
            exited.wait()
        }
        while reads.load(ordering: .relaxed) < 100 {}  // both readers are reading before the map fills
        let initial = env.mapSize
        for batch in 0..<20 {
            try env.write { txn in
                for i in (batch * 100)..<(batch * 100 + 100) { try txn.put(db, Self.key(i), Self.value(i)) }
            }
        }
        #expect(env.mapSize > initial)
        #expect(try env.count(db) == 2001)
        #expect(reads.load(ordering: .relaxed) > 0)
        #expect(wrong.load(ordering: .relaxed) == 0)
    }
}
