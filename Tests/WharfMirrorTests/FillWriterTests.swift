import Foundation
import NIOCore
import OCIDistribution
import Testing
import WharfStorage
@testable import WharfMirror

/// ``FillWriter``: a fill's bytes written and hashed off the task that receives them, in order,
/// with its followers told each step, and its first failure kept.
@Suite(.tags(.unit)) struct FillWriterTests {
    struct Setup {
        let root: String
        let store: BlobStore
        let index: CacheIndex
    }

    /// `reservations`: the store's promises of disk space (default: against the real free space).
    static func withStore(reservations: DiskReservations? = nil, _ body: (Setup) async throws -> Void) async throws {
        let root = NSTemporaryDirectory() + "wharf-writer-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let layout = CacheLayout(root: root)
        try layout.createDirectories()
        let store = BlobStore(layout: layout, reservations: reservations)
        try await body(Setup(root: root, store: store, index: try CacheIndex(directory: layout.indexDirectory)))
    }

    static func tempFiles(_ s: Setup) -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: s.root + "/tmp")) ?? [] }

    @Test("chunks far over the queue bound are written in order, hashed, and reported to the fill; the blob commits")
    func writesInOrder() async throws {
        try await Self.withStore { s in
            var bytes = [UInt8](repeating: 0, count: 12 << 20)
            for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 9) }
            let digest = Digest.sha256(of: bytes)
            let ingest = try BlobIngest.begin(digest, store: s.store, index: s.index, hashing: .byCaller)
            let fill = try #require(BlobFill(digest: digest, origin: ("up", "team/app"), ingest: ingest))
            let memory = FillMemory()
            let writer = FillWriter(ingest: ingest, fill: fill, memory: memory)
            try writer.expect(size: Int64(bytes.count))
            fill.started(size: Int64(bytes.count))
            for start in stride(from: 0, to: bytes.count, by: 100_000) {
                try await writer.submit(ByteBuffer(bytes: bytes[start..<min(start + 100_000, bytes.count)]))
            }
            let (done, hex) = try await writer.finish()
            #expect(hex == digest.hex)
            #expect(done.written == Int64(bytes.count))
            #expect(fill.snapshot.written == Int64(bytes.count), "the fill was not told about every byte")
            #expect(memory.held == 0, "written and hashed bytes still counted: \(memory.held)")
            let outcome = try done.commit(link: nil, computedHex: hex)
            guard case .cached(let record) = outcome else { Issue.record("not cached: \(outcome)"); return }
            #expect(record.size == Int64(bytes.count))
            #expect(try Data(contentsOf: URL(fileURLWithPath: s.store.layout.blobPath(digest))) == Data(bytes))
        }
    }

    @Test("writers sharing one memory bound hold at most its limit (plus a chunk each) in all, and all finish")
    func sharedBound() async throws {
        try await Self.withStore { s in
            let limit = 1 << 20, chunk = 100_000, writers = 4
            let memory = FillMemory(limit: limit)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for w in 0..<writers {
                    var bytes = [UInt8](repeating: 0, count: 8 << 20)
                    for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* (w + 3) &+ i >> 11) }
                    let blob = bytes
                    let digest = Digest.sha256(of: blob)
                    let ingest = try BlobIngest.begin(digest, store: s.store, index: s.index, hashing: .byCaller)
                    let fill = try #require(BlobFill(digest: digest, origin: ("up", "team/app"), ingest: ingest))
                    group.addTask {
                        let writer = FillWriter(ingest: ingest, fill: fill, memory: memory)
                        for start in stride(from: 0, to: blob.count, by: chunk) {
                            try await writer.submit(ByteBuffer(bytes: blob[start..<min(start + chunk, blob.count)]))
                        }
                        let (done, hex) = try await writer.finish()
                        #expect(hex == digest.hex)
                        done.abort()
                    }
                }
                try await group.waitForAll()
            }
            #expect(memory.held == 0, "bytes still counted: \(memory.held)")
            // Each writer queues one chunk, then waits while the total is over the limit.
            #expect(memory.peak <= limit + writers * chunk, "peak \(memory.peak) over \(limit) + \(writers) chunks")
            #expect(memory.peak > limit / 2, "the writers never filled the bound; the test checks nothing: peak \(memory.peak)")
        }
    }

    @Test("a blob bigger than the free disk is refused before any head, without allocating; one that fits is promised until its fallocate ran")
    func reservesAheadOfAllocation() async throws {
        try await Self.withStore { s in
            let digest = Digest.sha256(of: [4, 2])
            let ingest = try BlobIngest.begin(digest, store: s.store, index: s.index, hashing: .byCaller)
            let fill = try #require(BlobFill(digest: digest, origin: ("up", "team/app"), ingest: ingest))
            let writer = FillWriter(ingest: ingest, fill: fill, memory: FillMemory())
            let free = try #require(DiskReservations.freeBytes(at: s.root))
            #expect(throws: BlobIngest.Failure.self) { try writer.expect(size: free + (1 << 30)) }
            #expect(s.store.reservations.outstanding == 0)
            var st = stat()
            #expect(fstat(ingest.descriptor, &st) == 0 && st.st_blocks == 0, "nothing allocated for a refused blob")

            try writer.expect(size: 2)
            try await writer.submit(ByteBuffer(bytes: [4, 2]))
            let (done, hex) = try await writer.finish()
            #expect(hex == digest.hex && done.written == 2)
            #expect(s.store.reservations.outstanding == 0, "the promise ends once fallocate ran")
            done.abort()
        }
    }

    @Test("an allocation that fails after the promise (someone else took the space) fails the fill; the temp file goes, the promise ends")
    func allocationFailsLater() async throws {
        // Free space as a file system might misreport it: the gate admits, fallocate refuses
        // (EFBIG past the largest file ext4 holds, ENOSPC elsewhere) without allocating anything.
        try await Self.withStore(reservations: DiskReservations(freeBytes: { Int64.max })) { s in
            let digest = Digest.sha256(of: [5])
            let ingest = try BlobIngest.begin(digest, store: s.store, index: s.index, hashing: .byCaller)
            let fill = try #require(BlobFill(digest: digest, origin: ("up", "team/app"), ingest: ingest))
            let writer = FillWriter(ingest: ingest, fill: fill, memory: FillMemory())
            try writer.expect(size: Int64.max / 2)
            await #expect(throws: BlobIngest.Failure.self) {
                try await writer.submit(ByteBuffer(bytes: [5]))
                _ = try await writer.finish()
            }
            await writer.abort()
            #expect(fill.snapshot.written == 0, "nothing written after the failed allocation")
            #expect(s.store.reservations.outstanding == 0)
            #expect(Self.tempFiles(s).isEmpty, "temp file left: \(Self.tempFiles(s))")
        }
    }

    @Test("more bytes than expected: the first failure is kept, later chunks are dropped, and the temp file is removed")
    func firstFailureKept() async throws {
        try await Self.withStore { s in
            let digest = Digest.sha256(of: [1, 2, 3])
            let ingest = try BlobIngest.begin(digest, store: s.store, index: s.index, hashing: .byCaller)
            let fill = try #require(BlobFill(digest: digest, origin: ("up", "team/app"), ingest: ingest))
            let writer = FillWriter(ingest: ingest, fill: fill, memory: FillMemory())
            try writer.expect(size: 1000)
            try await writer.submit(ByteBuffer(bytes: [UInt8](repeating: 7, count: 900)))
            try? await writer.submit(ByteBuffer(bytes: [UInt8](repeating: 7, count: 900)))  // over: fails on the queue
            // Whichever call sees it, the failure is the size overrun, and nothing more is written.
            await #expect(throws: BlobIngest.Failure.exceedsExpectedSize(expected: 1000)) {
                try await writer.submit(ByteBuffer(bytes: [1]))
                _ = try await writer.finish()
            }
            await writer.abort()  // what the fill does when a call throws; nothing more if finish already removed the file
            #expect(fill.snapshot.written == 900)
            #expect(Self.tempFiles(s).isEmpty, "temp file left: \(Self.tempFiles(s))")
        }
    }

    @Test("abort after queued writes: they run (or are dropped) first, then the temp file goes")
    func abortAfterWrites() async throws {
        try await Self.withStore { s in
            let digest = Digest.sha256(of: [9])
            let ingest = try BlobIngest.begin(digest, store: s.store, index: s.index, hashing: .byCaller)
            let fill = try #require(BlobFill(digest: digest, origin: ("up", "team/app"), ingest: ingest))
            let writer = FillWriter(ingest: ingest, fill: fill, memory: FillMemory())
            for _ in 0..<20 { try await writer.submit(ByteBuffer(bytes: [UInt8](repeating: 1, count: 64 << 10))) }
            await writer.abort()
            #expect(Self.tempFiles(s).isEmpty, "temp file left: \(Self.tempFiles(s))")
            await #expect(throws: BlobIngest.Failure.self) { try await writer.submit(ByteBuffer(bytes: [1])) }
        }
    }

    @Test("ranged upstream reads beside a fill stop at a quarter of the blob")
    func rangedBudget() async throws {
        try await Self.withStore { s in
            let digest = Digest.sha256(of: [4])
            let ingest = try BlobIngest.begin(digest, store: s.store, index: s.index)
            defer { ingest.abort() }
            let fill = try #require(BlobFill(digest: digest, origin: ("up", "team/app"), ingest: ingest))
            #expect(fill.reserveRangedBytes(100, size: 1000))
            #expect(fill.reserveRangedBytes(150, size: 1000))
            #expect(!fill.reserveRangedBytes(1, size: 1000), "past a quarter of the blob")
            #expect(!fill.reserveRangedBytes(2000, size: 1000))
        }
    }
}
