import Foundation
import OCIDistribution
import Synchronization
import Testing
import WharfMirror
import WharfStorage
import WharfTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The hit path's open-file cache (`OpenBlobFiles`): a cached descriptor is used only while it is
/// still the indexed file, and descriptors of removed files are closed.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct OpenFileCacheTests {
    /// A store in a temp folder and a way to publish bytes under a digest.
    struct Fixture {
        let root: String
        let store: BlobStore

        init() throws {
            self.root = try TempDirectory.make("open-files")
            let layout = CacheLayout(root: self.root)
            try layout.createDirectories()
            self.store = BlobStore(layout: layout)
        }

        /// Publishes `bytes` as the file of `digest` (the store does not check digests; the fills do).
        func publish(_ bytes: [UInt8], as digest: Digest) throws {
            let temp = try self.store.createTempFile(for: digest)
            defer { close(temp.fd) }
            _ = bytes.withUnsafeBytes { write(temp.fd, $0.baseAddress, $0.count) }
            try self.store.publish(tempPath: temp.path, fd: temp.fd, as: digest)
        }

    }

    static func read(_ fd: Int32, count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, 0) }
        return Array(out.prefix(max(0, n)))
    }

    static func digest(_ n: Int) -> Digest { Digest(sha256Hex: String(repeating: String(n % 10), count: 64)) }

    @Test("a cached descriptor is reused, and dropped when its file is removed and published again or the index gives another size")
    func invalidation() throws {
        let f = try Fixture()
        defer { try? FileManager.default.removeItem(atPath: f.root) }
        let cache = OpenBlobFiles(store: f.store, capacity: 8)
        let d = Self.digest(1)
        let first = [UInt8](repeating: 0xAA, count: 5000), second = [UInt8](repeating: 0xBB, count: 5000)
        try f.publish(first, as: d)
        let fd1 = try #require(cache.descriptor(d, size: 5000, now: 1)?.fd)
        #expect(Self.read(fd1, count: 5000) == first)
        #expect(cache.descriptor(d, size: 5000, now: 1)?.fd == fd1, "a second hit should reuse the descriptor")
        #expect(cache.count == 1)
        // The access time is due once per second per cached file.
        #expect(cache.descriptor(d, size: 5000, now: 1)?.touch == false)
        #expect(cache.descriptor(d, size: 5000, now: 2)?.touch == true)
        #expect(cache.descriptor(d, size: 5000, now: 2)?.touch == false)

        // Removed (scrubbed, evicted) and filled again within the same second: the record looks the same.
        #expect(f.store.remove(d))
        try f.publish(second, as: d)
        let fd2 = try #require(cache.descriptor(d, size: 5000, now: 1)?.fd)
        #expect(Self.read(fd2, count: 5000) == second, "the old file's descriptor was used after its removal")
        #expect(cache.count == 1)

        // A size that disagrees with the file is refused, and the entry dropped.
        #expect(cache.descriptor(d, size: 4999, now: 1)?.fd == nil)
        #expect(cache.count == 0)
        let fd3 = try #require(cache.descriptor(d, size: 5000, now: 1)?.fd)
        #expect(Self.read(fd3, count: 5000) == second)

        // Removed and not published again: no descriptor.
        #expect(f.store.remove(d))
        #expect(cache.descriptor(d, size: 5000, now: 1)?.fd == nil)
        cache.closeAll()
    }

    @Test("the cache holds at most its capacity, and a reader too far behind the change log drops everything")
    func capacityAndOverflow() throws {
        let f = try Fixture()
        defer { try? FileManager.default.removeItem(atPath: f.root) }
        let cache = OpenBlobFiles(store: f.store, capacity: 3)
        let digests = (0..<5).map(Self.digest)
        for (i, d) in digests.enumerated() { try f.publish([UInt8](repeating: UInt8(i), count: 100 + i), as: d) }
        let before = Self.openDescriptors(under: f.root)
        for (i, d) in digests.enumerated() {
            let fd = try #require(cache.descriptor(d, size: Int64(100 + i), now: 1)?.fd)
            #expect(Self.read(fd, count: 100 + i) == [UInt8](repeating: UInt8(i), count: 100 + i))
            #expect(cache.count == min(i + 1, 3))
        }
        #expect(Self.openDescriptors(under: f.root) - before == 3, "evicted entries must be closed")

        // More removals than the log keeps: the cache cannot tell which, so it drops every entry.
        for n in 0..<600 { f.store.remove(Digest(sha256Hex: String(format: "%064x", 1000 + n))) }
        let fd = try #require(cache.descriptor(digests[0], size: 100, now: 1)?.fd)
        #expect(Self.read(fd, count: 100) == [UInt8](repeating: 0, count: 100))
        #expect(cache.count == 1)
        #expect(Self.openDescriptors(under: f.root) - before == 1)
        cache.closeAll()
        #expect(Self.openDescriptors(under: f.root) == before)
    }

    @Test("a served server keeps no descriptor of an evicted blob file, and serves the re-filled one")
    func evictedFilesAreClosed() async throws {
        let upstream = try UpstreamEnvironment()
        let images = try (0..<6).map { i in try upstream.generator.image(layerSizes: [50_000 + i], format: .oci) }
        for (i, image) in images.enumerated() { try upstream.storage.add(image: image, repository: "team/app\(i)", tag: "v1") }
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url, maxSize: 200_000)
        do {
            // Each small layer: a miss, then hits on several connections (both event loops cache it).
            for (i, image) in images.enumerated() {
                _ = try await RawHTTP.request("GET /v2/team/app\(i)/manifests/v1 HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
                let layer = image.layers[0]
                for _ in 0..<4 {
                    let r = try await RawHTTP.request("GET /v2/team/app\(i)/blobs/\(layer.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
                    #expect(r.status == 200 && Digest.sha256(of: r.body).description == layer.digest)
                }
            }
            #expect(wharf.mirror.evictor.counters.evictedBlobs.load(ordering: .relaxed) > 0, "nothing was evicted: the test proves nothing")
            // A hit on each loop applies the removals; then no descriptor points at a deleted blob file.
            // (Connections go to the loops in turn, shared with the suites running beside this one:
            // hits until both loops had one, at most 64.)
            let last = images[5].layers[0]
            for _ in 0..<64 where !Self.deletedDescriptors(under: wharf.dataDirectory).isEmpty {
                _ = try await RawHTTP.request("GET /v2/team/app5/blobs/\(last.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            }
            #expect(Self.deletedDescriptors(under: wharf.dataDirectory) == [])

            // An evicted layer (which ones go depends on digest order: their access times share a
            // second) is filled again, and its hits serve the new file.
            let cached = wharf.cachedBlobHexes()
            let evicted = try #require(images.indices.first { !cached.contains(images[$0].layers[0].hex) })
            let layer = images[evicted].layers[0]
            for _ in 0..<4 {
                let r = try await RawHTTP.request("GET /v2/team/app\(evicted)/blobs/\(layer.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
                #expect(r.status == 200 && Digest.sha256(of: r.body).description == layer.digest)
            }
            #expect(wharf.cachedBlobHexes().contains(layer.hex))
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
        let left = Self.descriptorTargets().filter { $0.hasPrefix(wharf.dataDirectory + "/blobs") }
        #expect(left == [], "a stopped server must close its cached descriptors")
    }

    /// This process's descriptors whose target is under `root`.
    static func openDescriptors(under root: String) -> Int { self.descriptorTargets().filter { $0.hasPrefix(root) }.count }

    static func deletedDescriptors(under root: String) -> [String] {
        self.descriptorTargets().filter { $0.hasPrefix(root + "/blobs") && $0.hasSuffix(" (deleted)") }
    }

    static func descriptorTargets() -> [String] { ProcFS.descriptorTargets() }
}
