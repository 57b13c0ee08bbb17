import Foundation
import LMDB
import Synchronization
import Testing

@Suite(.tags(.unit)) struct EnvironmentTests {
    @Test func putGetDeleteRoundtrip() throws {
        let dir = TemporaryDirectory()
        let env = try Environment(path: dir.path + "/nested/env")
        let db = try env.database(named: "blobs")

        try env.write { txn throws in
            try txn.put(db, "a".bytes, "alpha".bytes)
            try txn.put(db, "b".bytes, [])
            #expect(try txn.get(db, "a".bytes) == "alpha".bytes)  // sees its own writes
        }
        try env.read { txn throws in
            #expect(try txn.get(db, "a".bytes) == "alpha".bytes)
            #expect(try txn.get(db, "b".bytes) == [])
            #expect(try txn.get(db, "missing".bytes) == nil)
            #expect(try txn.withValue(db, "a".bytes) { $0.string } == "alpha")
            #expect(try txn.withValue(db, "missing".bytes) { _ in Issue.record("called for absent key") } == nil)
            #expect(try txn.count(db) == 2)
        }

        try env.write { txn throws in
            try txn.put(db, "a".bytes, "replaced".bytes)
            #expect(try txn.delete(db, "b".bytes) == true)
            #expect(try txn.delete(db, "b".bytes) == false)
        }
        #expect(try env.read { try $0.get(db, "a".bytes) } == "replaced".bytes)
        #expect(try env.read { try $0.get(db, "b".bytes) } == nil)
        #expect(try env.count(db) == 1)
    }

    @Test func databasesAreCachedAndIndependent() throws {
        let dir = TemporaryDirectory()
        let env = try Environment(path: dir.path)
        let one = try env.database(named: "one")
        let two = try env.database(named: "two")
        #expect(try env.database(named: "one") == one)
        #expect(one != two)

        try env.write { txn throws in
            try txn.put(one, "k".bytes, "1".bytes)
            try txn.put(two, "k".bytes, "2".bytes)
            try txn.put(two, "k2".bytes, "2".bytes)
        }
        #expect(try env.count(one) == 1)
        #expect(try env.count(two) == 2)
        #expect(try env.read { try $0.get(one, "k".bytes) } == "1".bytes)

        // Transactions can be lent to helpers.
        func lookup(_ txn: borrowing ReadTransaction, _ db: Database) throws -> [UInt8]? {
            try txn.get(db, "k".bytes)
        }
        #expect(try env.read { try lookup($0, two) } == "2".bytes)
        #expect(env.mapSize == 1 << 38)
        #expect(env.maxKeySize == 511)
    }

    /// Recycled (reset/renewed) read transactions must see databases opened after they were created.
    @Test func recycledReadersSeeNewDatabases() throws {
        let dir = TemporaryDirectory()
        let env = try Environment(path: dir.path)
        let first = try env.database(named: "first")
        #expect(try env.count(first) == 0)  // leaves a reset transaction in the pool
        let later = try env.database(named: "later")
        try env.write { try $0.put(later, "k".bytes, "v".bytes) }
        #expect(try env.read { try $0.get(later, "k".bytes) } == "v".bytes)
        #expect(try env.count(later) == 1)
    }

    @Test func persistsAcrossCloseAndReopen() throws {
        let dir = TemporaryDirectory()
        do {
            let env = try Environment(path: dir.path)
            let db = try env.database(named: "index")
            try env.write { txn throws in
                for i in 0..<1_000 {
                    try txn.put(db, "key-\(i)".bytes, "value-\(i)".bytes)
                }
            }
            try env.sync()
        }  // last reference dropped: environment closed
        let env = try Environment(path: dir.path)
        let db = try env.database(named: "index")
        #expect(try env.count(db) == 1_000)
        try env.read { txn throws in
            for i in [0, 1, 499, 999] {
                #expect(try txn.get(db, "key-\(i)".bytes) == "value-\(i)".bytes)
            }
        }
    }

    @Test func orderedIterationFromStartKey() throws {
        let dir = TemporaryDirectory()
        let env = try Environment(path: dir.path)
        let db = try env.database(named: "ordered")
        let keys = (0..<20).map { String(format: "k%02d", $0) }
        try env.write { txn throws in
            for key in keys.shuffled() { try txn.put(db, key.bytes, "v-\(key)".bytes) }
        }

        func collect(from start: String?, limit: Int = .max) throws -> [String] {
            try env.read { txn throws in
                var seen: [String] = []
                try txn.forEach(db, from: start?.bytes) { key, value in
                    #expect(value.string == "v-" + key.string)
                    seen.append(key.string)
                    return seen.count < limit
                }
                return seen
            }
        }

        #expect(try collect(from: nil) == keys)
        #expect(try collect(from: "") == keys)
        #expect(try collect(from: "k05") == Array(keys[5...]))
        #expect(try collect(from: "k055") == Array(keys[6...]))  // between keys: next greater
        #expect(try collect(from: "k05", limit: 3) == ["k05", "k06", "k07"])
        #expect(try collect(from: "a") == keys)
        #expect(try collect(from: "z") == [])

        let empty = try env.database(named: "empty")
        try env.read { txn throws in
            try txn.forEach(empty) { _, _ in
                Issue.record("empty database yielded an entry")
                return true
            }
        }
    }

    @Test func throwingWriteLeavesNothingBehind() throws {
        struct Boom: Error {}
        let dir = TemporaryDirectory()
        let env = try Environment(path: dir.path)
        let db = try env.database(named: "atomic")
        try env.write { try $0.put(db, "kept".bytes, "1".bytes) }

        #expect(throws: Boom.self) {
            try env.write { txn throws in
                try txn.put(db, "ghost".bytes, "x".bytes)
                try txn.put(db, "kept".bytes, "overwritten".bytes)
                #expect(try txn.delete(db, "kept".bytes))
                throw Boom()
            }
        }
        try env.read { txn throws in
            #expect(try txn.get(db, "ghost".bytes) == nil)
            #expect(try txn.get(db, "kept".bytes) == "1".bytes)
            #expect(try txn.count(db) == 1)
        }
        // The write lock was released: later writes still work.
        try env.write { try $0.put(db, "after".bytes, "2".bytes) }
        #expect(try env.count(db) == 2)
    }

    @Test func overlongAndEmptyKeysThrow() throws {
        let dir = TemporaryDirectory()
        let env = try Environment(path: dir.path)
        let db = try env.database(named: "keys")
        let longest = [UInt8](repeating: 0x61, count: env.maxKeySize)
        let tooLong = longest + [0x61]

        try env.write { try $0.put(db, longest, "ok".bytes) }
        #expect(try env.read { try $0.get(db, longest) } == "ok".bytes)

        #expect(throws: LMDBError.badValueSize) {
            try env.write { try $0.put(db, tooLong, "x".bytes) }
        }
        #expect(throws: LMDBError.badValueSize) {
            try env.read { try $0.get(db, tooLong) }
        }
        #expect(throws: LMDBError.badValueSize) {
            try env.write { try $0.delete(db, tooLong) }
        }
        #expect(throws: LMDBError.badValueSize) {
            try env.read { try $0.forEach(db, from: tooLong) { _, _ in true } }
        }
        #expect(throws: LMDBError.badValueSize) {
            try env.write { try $0.put(db, [], "x".bytes) }
        }
        do {
            try env.write { try $0.put(db, tooLong, "x".bytes) }
        } catch let error as LMDBError {
            #expect(error.description.contains("512 bytes"))
        }
        #expect(try env.count(db) == 1)
    }

    @Test func errorsDescribeThemselves() {
        #expect(LMDBError.mapFull.description.contains("MDB_MAP_FULL"))
        #expect(LMDBError(code: 2).description.contains("No such file"))
    }

    /// A transaction that does not fit the map is retried after the map grew (see MapGrowthTests);
    /// a body that rethrows its own error is aborted and leaves nothing behind.
    @Test func aFullMapGrowsAndAFailedBodyLeavesNothing() throws {
        let dir = TemporaryDirectory()
        let env = try Environment(path: dir.path, mapSize: 1 << 20)  // 1 MiB
        let db = try env.database(named: "small")
        let big = [UInt8](repeating: 7, count: 64 * 1024)
        let runs = Mutex(0)
        try env.write { txn throws in
            runs.withLock { $0 += 1 }
            for i in 0..<64 { try txn.put(db, "blob-\(i)".bytes, big) }
        }
        #expect(runs.withLock { $0 } > 1)  // the first run hit MDB_MAP_FULL and was run again
        #expect(try env.count(db) == 64)
        #expect(env.mapSize > 1 << 20)
        struct Refused: Error {}
        #expect(throws: Refused.self) {
            try env.write { txn throws in
                try txn.put(db, "other".bytes, [1])
                throw Refused()
            }
        }
        #expect(try env.count(db) == 64)
    }
}
