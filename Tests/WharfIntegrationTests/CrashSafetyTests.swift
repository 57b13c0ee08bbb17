import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution
import Testing
import WharfStorage
import WharfTestSupport

/// kill -9 of the real `wharf` binary in the middle of fills and evictions, again and again.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration, .realClients))
struct CrashSafetyTests {
    @Test("after a dozen kill -9s mid-fill the cache is consistent, tmp/ is emptied at start, and every image pulls")
    func killNineRepeatedly() async throws {
        let upstream = try UpstreamEnvironment()
        var images: [GeneratedImage] = []
        for i in 0..<6 {
            // Layers stay under ~3.5 MiB: skopeo sends `Connection: close`, and a hit larger than the
            // loopback socket buffer is then cut short by the server (reported separately).
            let image = try upstream.generator.image(layerSizes: [Int.random(in: 1_500_000...3_000_000), 1_500_000], format: .dockerSchema2)
            try upstream.storage.add(image: image, repository: "crash/app\(i)", tag: "v1")
            images.append(image)
        }
        try await upstream.start()
        let sandbox = try TempDirectory.make("crash")
        let data = sandbox + "/data"
        let limit = ["--max-size", "14MiB"]  // under the ~22-31 MB of blobs: evictions keep fills coming
        let requests = images.enumerated().flatMap { i, image in image.blobs.map { (repo: "crash/app\(i)", blob: $0) } }
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        var seen: [String: Int] = [:]  // what the rounds' logs show happened
        do {
            // At least 12 rounds; more (up to 30) while the logs do not yet show enough fills and
            // evictions, so a slow, loaded machine still exercises what this test is about.
            for round in 0..<30 {
                if round >= 12, seen["cached", default: 0] >= 12, seen["evictions", default: 0] >= 1,
                   seen["restarts with leftovers", default: 0] >= 1 { break }
                let wharf = try await WharfProcess.start(upstream: upstream.registry.url, dataDirectory: data, extraArguments: limit)
                #expect(CacheFiles.tempFiles(in: data).isEmpty, "round \(round): tmp/ not emptied at start")
                let load = Task {
                    await withTaskGroup(of: Void.self) { group in
                        for _ in 0..<8 {
                            group.addTask {
                                while !Task.isCancelled {
                                    let r = requests.randomElement()!
                                    guard let response = try? await client.execute(
                                        HTTPClientRequest(url: "\(wharf.url)/v2/\(r.repo)/blobs/\(r.blob.digest)"), timeout: .seconds(20))
                                    else { return }
                                    do { for try await _ in response.body {} } catch { return }
                                }
                            }
                        }
                    }
                }
                try await Task.sleep(for: .milliseconds(Int.random(in: 100...700)))
                try await wharf.kill()
                let log = wharf.child.output()
                for (key, marker) in [("cached", "blob cached"), ("evictions", "evicted least recently used"), ("restarts with leftovers", "removed unfinished fills")] {
                    seen[key, default: 0] += log.components(separatedBy: marker).count - 1
                }
                load.cancel()
                await load.value
            }

            // The kills landed mid-fill (a later start removed its temp files), between fills and evictions.
            #expect(seen["restarts with leftovers", default: 0] >= 1, "\(seen)")
            #expect(seen["cached", default: 0] >= 12 && seen["evictions", default: 0] >= 1, "\(seen)")

            // Damage the cache by hand too: a committed blob loses its file, an unknown file appears.
            let indexed = try CacheFiles.indexed(in: data)
            let files = CacheFiles.blobs(in: data)
            let lost = try #require(indexed.keys.first { files[$0] != nil })
            try FileManager.default.removeItem(atPath: Self.path(data, lost))
            let stray = try upstream.generator.rawBlob(size: 300_000)
            try FileManager.default.createDirectory(atPath: data + "/blobs/sha256/" + stray.hex.prefix(2), withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: stray.path, toPath: Self.path(data, stray.hex))

            // A clean start (unbounded, so no eviction races the check): tmp/ empty, the background
            // check drops the entry and removes the orphan.
            let checked = try await WharfProcess.start(upstream: upstream.registry.url, dataDirectory: data)
            #expect(CacheFiles.tempFiles(in: data).isEmpty)
            let report = try await Self.waitForCacheCheck(checked)
            #expect(report.contains("dropped-entries=") && !report.contains("dropped-entries=0 "), "check: \(report)")
            #expect(report.contains("removed-orphans=") && !report.contains("removed-orphans=0 "), "check: \(report)")
            #expect(await checked.stop() == 0)
            try Self.expectConsistent(data)

            // Every image pulls through the recovered cache.
            let served = try await WharfProcess.start(upstream: upstream.registry.url, dataDirectory: data, extraArguments: limit)
            for (i, image) in images.enumerated() {
                let dest = sandbox + "/pull-\(i)"
                let pull = try await Skopeo.copy(source: "docker://\(served.host)/crash/app\(i):v1", destinationDirectory: dest)
                #expect(pull.status == 0, "pull \(i) failed: \(pull.output)\nwharf log:\n\(served.child.output().suffix(6000))")
                #expect(try SkopeoDir.verify(directory: dest, expected: image.blobs) == [])
            }
            #expect(await served.stop() == 0)
            try Self.expectConsistent(data)
            let verify = try await WharfProcess.run(["verify", "--data-dir", data])
            #expect(verify.status == 0, "wharf verify: \(verify.output)")
        } catch {
            Issue.record(error)
        }
        try? await client.shutdown()
        try? FileManager.default.removeItem(atPath: sandbox)
        await upstream.stop()
    }

    static func path(_ data: String, _ hex: String) -> String { "\(data)/blobs/sha256/\(hex.prefix(2))/\(hex)" }

    /// Index and disk agree, every file hashes to its name, tmp/ is empty.
    static func expectConsistent(_ data: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let indexed = try CacheFiles.indexed(in: data)
        let files = CacheFiles.blobs(in: data)
        #expect(indexed == files, "index and disk disagree: index-only \(Set(indexed.keys).subtracting(files.keys)), disk-only \(Set(files.keys).subtracting(indexed.keys))", sourceLocation: sourceLocation)
        for hex in files.keys {
            #expect(try Hashing.sha256Hex(file: Self.path(data, hex)) == hex, "blob \(hex) is corrupt", sourceLocation: sourceLocation)
        }
        #expect(CacheFiles.tempFiles(in: data).isEmpty, sourceLocation: sourceLocation)
    }

    /// Waits for the server's "cache check finished" log line and returns it.
    static func waitForCacheCheck(_ wharf: WharfProcess) async throws -> String {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let line = wharf.child.output().split(separator: "\n").first(where: { $0.contains("cache check finished") }) {
                return String(line) + " "
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw FixtureError.timeout("no cache check in: \(wharf.child.output())")
    }
}
