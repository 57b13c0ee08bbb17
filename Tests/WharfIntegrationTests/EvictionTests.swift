import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution
import Synchronization
import Testing
import WharfClock
import WharfMirror
import WharfStorage
import WharfTestSupport

/// Size-bounded LRU eviction: skopeo pulls far more than `--max-size` through Wharf.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration, .realClients))
struct EvictionTests {
    static let maxSize: Int64 = 8 << 20  // high watermark 7.2 MiB, low 6.4 MiB

    @Test("pulls totaling twice the limit keep the cache under it; the newest image stays cached; served blobs are spared")
    func lruUnderLimit() async throws {
        let (upstream, images) = try await Self.sixImages()
        let clock = ManualClock()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url, maxSize: Self.maxSize, clock: clock.clock)
        let out = try TempDirectory.make("evict")
        do {
            var protected: GeneratedBlob?
            var protectedMark: ServingMark?
            for (i, image) in images.enumerated() {
                let imageBytes = Int64(image.blobs.reduce(0) { $0 + $1.size })
                let peak = Atomic<Int64>(0)
                let sampler = Task {
                    while !Task.isCancelled {
                        let used = wharf.blobBytesOnDisk()
                        peak.max(used, ordering: .relaxed)
                        try? await Task.sleep(for: .milliseconds(5))
                    }
                }
                let pull = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app\(i):v1", destinationDirectory: out + "/\(i)")
                #expect(pull.status == 0, "pull \(i) failed: \(pull.output)")
                #expect(try SkopeoDir.verify(directory: out + "/\(i)", expected: image.blobs) == [])
                try await Self.waitUntilSettled(wharf)
                sampler.cancel()
                await sampler.value
                #expect(peak.load(ordering: .relaxed) <= Self.maxSize + imageBytes, "pull \(i): disk use peaked at \(peak.load(ordering: .relaxed))")
                let used = wharf.blobBytesOnDisk()
                #expect(used <= Self.maxSize, "after pull \(i): \(used) bytes under blobs/")
                #expect(wharf.mirror.budget.indexedBytes == used, "index total \(wharf.mirror.budget.indexedBytes) vs disk \(used)")
                let cached = wharf.cachedBlobHexes()
                for blob in image.blobs { #expect(cached.contains(blob.hex), "newest image \(i): \(blob.digest) not cached") }

                if i == 1 {
                    // Hold a "being served" mark on the oldest cached layer: eviction must skip it.
                    protected = images[0].layers.first { cached.contains($0.hex) } ?? image.layers[0]
                    protectedMark = wharf.mirror.serving.markServing(try Digest(parsing: protected!.digest))
                }
                clock.advance(by: .seconds(2))  // last-access times have one-second precision: the next image is newer
            }
            let evicted = wharf.mirror.evictor.counters.evictedBlobs.load(ordering: .relaxed)
            #expect(evicted > 0)
            #expect(wharf.mirror.evictor.counters.evictedBytes.load(ordering: .relaxed) > 0)
            #expect(!wharf.cachedBlobHexes().contains(images[0].config.hex), "the least recently used config was not evicted")
            if let protected { #expect(wharf.cachedBlobHexes().contains(protected.hex), "a blob marked as being served was evicted") }
            protectedMark?.release()
            #expect(wharf.mirror.serving.count == 0)
            #expect(try wharf.mirror.index.counts().blobs == wharf.cachedBlobHexes().count)
        } catch {
            Issue.record(error)
        }
        try? FileManager.default.removeItem(atPath: out)
        await wharf.stop()
        await upstream.stop()
    }

    @Test("a blob larger than the high watermark is served whole but not cached, and counted")
    func tooLargeToCache() async throws {
        let upstream = try UpstreamEnvironment()
        let huge = try upstream.generator.rawBlob(size: 7_700_000)  // over 90% of 8 MiB
        let small = try upstream.generator.rawBlob(size: 300_000)
        try upstream.storage.addBlob(huge, repository: "team/big")
        try upstream.storage.addBlob(small, repository: "team/big")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url, maxSize: Self.maxSize)
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            for blob in [huge, small] {
                let r = try await client.execute(HTTPClientRequest(url: "\(wharf.url)/v2/team/big/blobs/\(blob.digest)"), timeout: .seconds(60))
                var hash = StreamingSHA256()
                var count = 0
                for try await chunk in r.body {
                    hash.update(chunk)
                    count += chunk.readableBytes
                }
                #expect(r.status == .ok)
                #expect(count == blob.size && hash.finalize() == blob.hex, "\(blob.digest) arrived damaged")
            }
            try await Self.waitUntilSettled(wharf)
            #expect(!wharf.cachedBlobHexes().contains(huge.hex))
            #expect(try wharf.mirror.index.blob(Digest(parsing: huge.digest)) == nil)
            #expect(wharf.cachedBlobHexes().contains(small.hex))
            #expect(wharf.mirror.budget.declinedFills.load(ordering: .relaxed) == 1)
            #expect(wharf.mirror.budget.declinedBytes.load(ordering: .relaxed) == Int64(huge.size))
            #expect(wharf.tempFiles().isEmpty, "temp files left: \(wharf.tempFiles())")
            #expect(wharf.mirror.budget.indexedBytes == Int64(small.size))
        } catch {
            Issue.record(error)
        }
        try? await client.shutdown()
        await wharf.stop()
        await upstream.stop()
    }

    /// Waits until no fill runs, the cache is back under its high watermark and the evictor has
    /// unlinked what it took out of the index.
    @Test("a pinned image survives eviction while other images come and go")
    func pinnedImageSurvives() async throws {
        let (upstream, images) = try await Self.sixImages()
        let clock = ManualClock()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url, maxSize: Self.maxSize, pins: ["team/app0:v1"], clock: clock.clock)
        let out = try TempDirectory.make("evict-pin")
        do {
            for i in images.indices {
                let pull = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app\(i):v1", destinationDirectory: out + "/\(i)")
                #expect(pull.status == 0, "pull \(i) failed: \(pull.output)")
                try await Self.waitUntilSettled(wharf)
                #expect(wharf.blobBytesOnDisk() <= Self.maxSize)
                clock.advance(by: .seconds(2))  // last-access times have one-second precision: the next image is newer
            }
            #expect(wharf.mirror.evictor.counters.evictedBlobs.load(ordering: .relaxed) > 0, "nothing was evicted: the test proves nothing")
            let cached = wharf.cachedBlobHexes()
            for blob in images[0].blobs { #expect(cached.contains(blob.hex), "pinned blob \(blob.digest) was evicted") }
            #expect(!images[1].blobs.allSatisfy { cached.contains($0.hex) }, "the unpinned oldest image was not evicted")
        } catch {
            Issue.record(error)
        }
        try? FileManager.default.removeItem(atPath: out)
        await wharf.stop()
        await upstream.stop()
    }

    /// An upstream serving six 2.4 MB images, `team/app0:v1` … `team/app5:v1` (14.4 MB in all).
    static func sixImages() async throws -> (UpstreamEnvironment, [GeneratedImage]) {
        let upstream = try UpstreamEnvironment()
        var images: [GeneratedImage] = []
        for i in 0..<6 {
            let image = try upstream.generator.image(layerSizes: [1_000_000, 1_400_000], format: .oci)
            try upstream.storage.add(image: image, repository: "team/app\(i)", tag: "v1")
            images.append(image)
        }
        try await upstream.start()
        return (upstream, images)
    }

    static func waitUntilSettled(_ wharf: WharfInstance, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        try await eventually("the cache did not settle (fills, eviction, unlinks)", sourceLocation: sourceLocation) {
            let budget = wharf.mirror.budget
            return wharf.mirror.fills.inFlight == 0 && !budget.needsEviction && budget.publishingBytes == 0
                && wharf.blobBytesOnDisk() == budget.indexedBytes
        }
    }
}
