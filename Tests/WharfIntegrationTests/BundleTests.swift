import Foundation
import Testing
import WharfMirror
import WharfTestSupport
import WharfUpstream

/// Air-gapped sites: `wharf export` writes cached images as an OCI image layout tarball, `wharf
/// import` verifies and loads it into an empty cache with no upstream, and skopeo pulls from that.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration, .realClients))
struct BundleTests {
    @Test("export from one cache, import into an empty one with no upstream, pull with skopeo; a damaged bundle is refused")
    func exportImportPull() async throws {
        let upstream = try UpstreamEnvironment()
        let app = try upstream.generator.image(layerSizes: [400_000, 30_000], format: .dockerSchema2)
        let multi = try upstream.generator.index(
            platforms: [(os: "linux", architecture: "amd64"), (os: "linux", architecture: "arm64")], layerSizes: [200_000], format: .oci)
        try upstream.storage.add(image: app, repository: "team/app", tag: "v1")
        try upstream.storage.add(index: multi, repository: "team/multi", tag: "latest")
        try await upstream.start()
        let source = try await WharfInstance.start(upstream: upstream.registry.url)
        let work = try TempDirectory.make("bundle")
        do {
            let exported = try await WharfProcess.run(["export", "--url", source.url, "team/app:v1", "team/multi:latest", "-o", work + "/bundle.tar"])
            #expect(exported.status == 0, "\(exported.output)")
            await source.stop()
            await upstream.stop()  // from here on there is no upstream at all

            // The site's configuration names the upstream the images are filed under (import checks it).
            let siteConfig = work + "/site.yaml"
            try "upstreams:\n  - name: test-upstream\n    url: http://127.0.0.1:9\n".write(toFile: siteConfig, atomically: true, encoding: .utf8)
            let imported = try await WharfProcess.run([
                "import", work + "/bundle.tar", "--data-dir", work + "/site", "--config", siteConfig, "--upstream", "test-upstream",
            ])
            #expect(imported.status == 0, "\(imported.output)")
            #expect(imported.output.contains("every digest verified"))
            let site = try await WharfInstance.start(upstream: "http://127.0.0.1:9", dataDirectory: work + "/site")
            let a = try await Skopeo.copy(source: "docker://\(site.host)/team/app:v1", destinationDirectory: work + "/a")
            #expect(a.status == 0, "\(a.output)")
            #expect(try SkopeoDir.verify(directory: work + "/a", expected: app.blobs) == [])
            for platform in multi.images {
                let dest = work + "/m-\(platform.platform.architecture)"
                let m = try await Skopeo.copy(
                    source: "docker://\(site.host)/team/multi:latest", destinationDirectory: dest,
                    extraArguments: ["--override-os", platform.platform.os, "--override-arch", platform.platform.architecture])
                #expect(m.status == 0, "\(m.output)")
                #expect(try SkopeoDir.verify(directory: dest, expected: platform.blobs) == [])
            }
            await site.stop(removeData: false)

            // One flipped byte in a layer: the import refuses that blob and says so.
            let data = try Data(contentsOf: URL(fileURLWithPath: work + "/bundle.tar"))
            var bytes = [UInt8](data)
            let marker = Array("blobs/sha256/\(app.layers[0].digest.dropFirst(7))".utf8)
            let at = try #require(bytes.firstRange(of: marker))
            bytes[at.lowerBound + 512 + 1000] ^= 0xFF
            try Data(bytes).write(to: URL(fileURLWithPath: work + "/damaged.tar"))
            let refused = try await WharfProcess.run([
                "import", work + "/damaged.tar", "--data-dir", work + "/other", "--config", siteConfig, "--upstream", "test-upstream",
            ])
            #expect(refused.status != 0 && refused.output.contains("does not match its digest"), "\(refused.output)")
            #expect(!CacheFiles.blobs(in: work + "/other").keys.contains(String(app.layers[0].digest.dropFirst(7))))
            #expect(CacheFiles.tempFiles(in: work + "/other").isEmpty)
        } catch {
            Issue.record(error)
            await source.stop()
            await upstream.stop()
        }
        try? FileManager.default.removeItem(atPath: work)
    }
}
