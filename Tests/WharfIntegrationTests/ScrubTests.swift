import Foundation
import OCIDistribution
import Testing
import WharfStorage
import WharfTestSupport

/// `wharf verify` and `wharf gc`, run as the real binary on a data folder no server uses.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration, .realClients))
struct ScrubTests {
    @Test("verify finds and removes a flipped byte (exit 1), the next pull re-fills it; gc removes planted damage")
    func verifyAndGC() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [1_500_000, 700_000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        let outsider = try upstream.generator.rawBlob(size: 200_000)
        try await upstream.start()
        let sandbox = try TempDirectory.make("scrub")
        let data = sandbox + "/data"
        do {
            try await Self.pull(image, upstream: upstream, data: data, into: sandbox + "/first")
            let victim = image.layers[0]
            let path = CrashSafetyTests.path(data, victim.hex)
            try Self.flipByte(at: 123_456, in: path)

            let verify = try await WharfProcess.run(["verify", "--data-dir", data])
            #expect(verify.status == 1, "verify: \(verify.output)")
            #expect(verify.output.contains("corrupt \(victim.digest)"), "verify: \(verify.output)")
            #expect(verify.output.contains("verified \(image.blobs.count) blobs: 1 corrupt"), "verify: \(verify.output)")
            #expect(!FileManager.default.fileExists(atPath: path))
            #expect(try CacheFiles.indexed(in: data)[victim.hex] == nil)

            let again = try await WharfProcess.run(["verify", "--data-dir", data])
            #expect(again.status == 0, "verify after removal: \(again.output)")
            let one = try await WharfProcess.run(["verify", "--data-dir", data, "--digest", image.layers[1].digest])
            #expect(one.status == 0 && one.output.contains("verified 1 blobs: all intact"), "verify --digest: \(one.output)")
            let sample = try await WharfProcess.run(["verify", "--data-dir", data, "--sample", "1"])
            #expect(sample.status == 0 && sample.output.contains("verified 1 blobs"), "verify --sample: \(sample.output)")
            let nowhere = try await WharfProcess.run(["verify", "--data-dir", sandbox + "/nowhere"])
            #expect(nowhere.status == 2, "verify of a missing cache: \(nowhere.output)")

            // The next pull fetches the removed layer again, intact.
            try await Self.pull(image, upstream: upstream, data: data, into: sandbox + "/second")
            #expect(try Hashing.sha256Hex(file: path) == victim.hex)
            #expect(try CacheFiles.indexed(in: data)[victim.hex] == Int64(victim.size))

            // gc: an orphan file and an entry whose file is gone.
            let orphan = CrashSafetyTests.path(data, outsider.hex)
            try FileManager.default.createDirectory(atPath: (orphan as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: outsider.path, toPath: orphan)
            let gone = image.layers[1]
            try FileManager.default.removeItem(atPath: CrashSafetyTests.path(data, gone.hex))

            let dry = try await WharfProcess.run(["gc", "--data-dir", data, "--dry-run"])
            #expect(dry.status == 0, "gc --dry-run: \(dry.output)")
            #expect(dry.output.contains("orphan files: 1 ") && dry.output.contains("entries without a matching file: 1 "), "gc --dry-run: \(dry.output)")
            #expect(FileManager.default.fileExists(atPath: orphan))

            let gc = try await WharfProcess.run(["gc", "--data-dir", data])
            #expect(gc.status == 0, "gc: \(gc.output)")
            #expect(gc.output.contains("orphan files: 1 ") && gc.output.contains("dangling tags: 0"), "gc: \(gc.output)")
            #expect(!FileManager.default.fileExists(atPath: orphan))
            let indexed = try CacheFiles.indexed(in: data)
            #expect(indexed[gone.hex] == nil)
            #expect(indexed == CacheFiles.blobs(in: data))

            let clean = try await WharfProcess.run(["gc", "--data-dir", data])
            #expect(clean.output.contains("orphan files: 0 ") && clean.output.contains("entries without a matching file: 0 "), "gc again: \(clean.output)")
        } catch {
            Issue.record(error)
        }
        try? FileManager.default.removeItem(atPath: sandbox)
        await upstream.stop()
    }

    /// Starts the binary on `data`, pulls `image` with skopeo, stops it.
    static func pull(_ image: GeneratedImage, upstream: UpstreamEnvironment, data: String, into dest: String) async throws {
        let wharf = try await WharfProcess.start(upstream: upstream.registry.url, dataDirectory: data)
        let pull = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app:v1", destinationDirectory: dest)
        #expect(pull.status == 0, "pull failed: \(pull.output)")
        #expect(try SkopeoDir.verify(directory: dest, expected: image.blobs) == [])
        #expect(await wharf.stop() == 0)
    }

    static func flipByte(at offset: UInt64, in path: String) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: offset)
        let byte = try #require(try handle.read(upToCount: 1)?.first)
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: Data([byte ^ 0xFF]))
    }
}
