#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import OCIDistribution
import Synchronization
import Testing
import WharfStorage

/// The ingest transaction against a real cache folder and LMDB index.
@Suite(.tags(.unit)) struct BlobIngestTests {
    final class Cache {
        let root: String
        let layout: CacheLayout
        let budget: CacheBudget
        let index: CacheIndex
        let store: BlobStore

        init(maxBytes: Int64? = nil) throws {
            self.root = NSTemporaryDirectory() + "wharf-ingest-\(UUID().uuidString.prefix(8))"
            self.layout = CacheLayout(root: self.root)
            try self.layout.createDirectories()
            self.budget = CacheBudget(limits: try maxBytes.map { try CacheLimits(maxBytes: $0) }, logger: Logger(label: "test"))
            self.index = try CacheIndex(directory: self.layout.indexDirectory, budget: self.budget)
            self.store = BlobStore(layout: self.layout, budget: self.budget)
        }

        deinit { try? FileManager.default.removeItem(atPath: self.root) }

        var tempFiles: [String] { (try? FileManager.default.contentsOfDirectory(atPath: self.layout.tempDirectory)) ?? [] }
        /// True while `fd` still refers to a file of this cache. (Whether the number is open at all is
        /// no test: suites running beside this one reuse freed descriptor numbers.)
        func isOpen(_ fd: Int32) -> Bool {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)") else { return false }
            return target.hasPrefix(self.root)
        }
        func fileBytes(_ digest: Digest) -> [UInt8]? { FileManager.default.contents(atPath: self.layout.blobPath(digest)).map { [UInt8]($0) } }
    }

    static func bytes(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) } }

    /// Appends `bytes` in uneven chunks.
    static func append(_ bytes: [UInt8], to ingest: inout BlobIngest) throws {
        var offset = 0, step = 1
        try bytes.withUnsafeBytes { raw in
            while offset < raw.count {
                let end = min(offset + step, raw.count)
                try ingest.append(UnsafeRawBufferPointer(rebasing: raw[offset..<end]))
                offset = end
                step = step * 3 + 1
            }
        }
    }

    @Test("a verified blob is published, indexed with its link, and its descriptor closed; tmp/ is empty")
    func commitCaches() throws {
        let cache = try Cache()
        let data = Self.bytes(100_000), digest = Digest.sha256(of: data)
        var ingest = try BlobIngest.begin(digest, store: cache.store, index: cache.index, expectedSize: Int64(data.count))
        let fd = ingest.descriptor
        try Self.append(data, to: &ingest)
        #expect(ingest.written == Int64(data.count))
        let outcome = try ingest.commit(link: ("up", "team/app"))
        guard case .cached(let record) = outcome else { Issue.record("not cached: \(outcome)"); return }
        #expect(record.size == Int64(data.count))
        #expect(try cache.index.blob(digest)?.size == Int64(data.count))
        #expect(try cache.index.isLinked(digest, upstream: "up", repository: "team/app"))
        #expect(cache.fileBytes(digest) == data)
        #expect(cache.tempFiles.isEmpty && !cache.isOpen(fd))
        #expect(cache.budget.indexedBytes == Int64(data.count) && cache.budget.publishingBytes == 0)
    }

    @Test("a caller-hashed ingest is checked against the caller's digest")
    func callerHashing() throws {
        let cache = try Cache()
        let data = Self.bytes(5_000), digest = Digest.sha256(of: data)
        var ingest = try BlobIngest.begin(digest, store: cache.store, index: cache.index, hashing: .byCaller)
        try Self.append(data, to: &ingest)
        #expect(throws: BlobIngest.Failure.digestMismatch(actualHex: String(repeating: "0", count: 64))) {
            try ingest.verify(computedHex: String(repeating: "0", count: 64))
        }
        guard case .cached = try ingest.commit(link: nil, computedHex: digest.hex) else { Issue.record("not cached"); return }
        #expect(cache.fileBytes(digest) == data)
    }

    @Test("a blob over the high watermark is declined: not published nor indexed, its link recorded, counted")
    func commitDeclines() throws {
        let cache = try Cache(maxBytes: 10_000)  // high watermark 9,000
        let data = Self.bytes(9_001), digest = Digest.sha256(of: data)
        var ingest = try BlobIngest.begin(digest, store: cache.store, index: cache.index)
        let follower = dup(ingest.descriptor)  // a fill's follower still reads the unlinked file
        defer { close(follower) }
        try Self.append(data, to: &ingest)
        let outcome = try ingest.commit(link: ("up", "team/app"))
        #expect(outcome == .declined(.largerThanHighWatermark(size: 9_001, highWatermark: 9_000)))
        #expect(try cache.index.blob(digest) == nil && cache.fileBytes(digest) == nil && cache.tempFiles.isEmpty)
        #expect(try cache.index.isLinked(digest, upstream: "up", repository: "team/app"))
        #expect(cache.budget.declinedFills.load(ordering: .relaxed) == 1 && cache.budget.publishingBytes == 0)
        var first = [UInt8](repeating: 0, count: 16)
        #expect(pread(follower, &first, 16, 0) == 16 && first == Array(data.prefix(16)))

        // The next blob that fits is cached: no decline lingers for a digest.
        let small = Self.bytes(100), smallDigest = Digest.sha256(of: small)
        var next = try BlobIngest.begin(smallDigest, store: cache.store, index: cache.index)
        try Self.append(small, to: &next)
        guard case .cached = try next.commit(link: nil) else { Issue.record("a fitting blob was declined"); return }
    }

    @Test("wrong digest, short or long bodies fail; nothing is published and tmp/ is emptied")
    func failures() throws {
        let cache = try Cache()
        let data = Self.bytes(3_000), digest = Digest.sha256(of: data)

        var wrong = try BlobIngest.begin(Digest.sha256(of: [1, 2, 3]), store: cache.store, index: cache.index)
        try Self.append(data, to: &wrong)
        #expect(throws: BlobIngest.Failure.digestMismatch(actualHex: digest.hex)) { try wrong.commit(link: nil) }

        var short = try BlobIngest.begin(digest, store: cache.store, index: cache.index, expectedSize: 3_001)
        try Self.append(data, to: &short)
        #expect(throws: BlobIngest.Failure.sizeMismatch(expected: 3_001, actual: 3_000)) { try short.commit(link: nil) }

        var long = try BlobIngest.begin(digest, store: cache.store, index: cache.index, expectedSize: 2_999)
        #expect(throws: BlobIngest.Failure.exceedsExpectedSize(expected: 2_999)) { try Self.append(data, to: &long) }
        #expect(long.written <= 2_999)
        long.abort()

        #expect(cache.tempFiles.isEmpty)
        #expect(try cache.index.blob(digest) == nil && cache.fileBytes(digest) == nil)
    }

    @Test("abort removes the temp file and closes the descriptor")
    func abort() throws {
        let cache = try Cache()
        var ingest = try BlobIngest.begin(Digest.sha256(of: [9]), store: cache.store, index: cache.index)
        try Self.append([9, 9, 9], to: &ingest)
        let fd = ingest.descriptor
        #expect(cache.tempFiles.count == 1)
        ingest.abort()
        #expect(cache.tempFiles.isEmpty && !cache.isOpen(fd))
    }

    @Test("appends land at the right offsets whatever the chunking")
    func appendOffsets() throws {
        let cache = try Cache()
        let data = Self.bytes(1 << 20 | 37), digest = Digest.sha256(of: data)
        var ingest = try BlobIngest.begin(digest, store: cache.store, index: cache.index, expectedSize: Int64(data.count))
        try Self.append(data, to: &ingest)
        _ = try ingest.commit(link: nil)
        #expect(cache.fileBytes(digest) == data)
    }
}
