import Foundation
import Testing
import WharfTestSupport

/// `wharf warm`: images fetched into the cache ahead of demand, per platform, under a bandwidth cap.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct WarmTests {
    @Test("warm caches the chosen platform's blobs only, then all; a bandwidth cap slows it down; a missing image fails the run")
    func warmPlatformsAndRate() async throws {
        let upstream = try UpstreamEnvironment()
        let multi = try upstream.generator.index(
            platforms: [(os: "linux", architecture: "amd64"), (os: "linux", architecture: "arm64")], layerSizes: [600_000], format: .oci)
        try upstream.storage.add(index: multi, repository: "team/multi", tag: "latest")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            let arm = try #require(multi.images.first { $0.platform.architecture == "arm64" })
            let amd = try #require(multi.images.first { $0.platform.architecture == "amd64" })
            let one = try await WharfProcess.run(["warm", "--url", wharf.url, "--platform", "linux/arm64", "team/multi:latest"])
            #expect(one.status == 0, "\(one.output)")
            #expect(one.output.contains("warmed 1/1 image(s): 2 manifest(s), 2/2 blob(s)"), "\(one.output)")
            try await Task.sleep(for: .milliseconds(200))  // the last fill commits just after its last byte
            let cached = wharf.cachedBlobHexes()
            for blob in arm.blobs { #expect(cached.contains(String(blob.digest.dropFirst(7)))) }
            for blob in amd.layers { #expect(!cached.contains(String(blob.digest.dropFirst(7))), "amd64 was not asked for") }

            // All platforms, capped at 400 kB/s: the ~0.6 MB amd64 layer cannot arrive in under ~1 s.
            let started = ContinuousClock.now
            let all = try await WharfProcess.run(["warm", "--url", wharf.url, "--max-rate", "400KB", "team/multi:latest"])
            #expect(all.status == 0, "\(all.output)")
            #expect(ContinuousClock.now - started >= .milliseconds(900), "the cap was not applied")
            try await Task.sleep(for: .milliseconds(200))
            for blob in amd.blobs { #expect(wharf.cachedBlobHexes().contains(String(blob.digest.dropFirst(7)))) }

            let missing = try await WharfProcess.run(["warm", "--url", wharf.url, "team/nothing:1"])
            #expect(missing.status != 0 && missing.output.contains("FAILED"), "\(missing.output)")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }
}
