import Foundation
import Testing
import WharfMirror
import WharfTestSupport

/// A remote site: a site Wharf whose upstream is a central Wharf, which fronts the real registry.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration, .realClients))
struct SiteTierTests {
    @Test("a pull through the site fills both tiers; the site never re-asks central for what it has, and serves it with central and the registry down")
    func siteAndCentral() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [800_000, 120_000], format: .dockerSchema2)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try await upstream.start()
        let central = try await WharfInstance.start(upstream: upstream.registry.url)
        // Tags are answered from the site's cache for 5 minutes, then revalidated (stale if central is down).
        let site = try await WharfInstance.start(upstream: central.url, tagTTL: .seconds(300))
        let work = try TempDirectory.make("site")
        do {
            let first = try await Skopeo.copy(source: "docker://\(site.host)/team/app:v1", destinationDirectory: work + "/a")
            #expect(first.status == 0, "\(first.output)")
            #expect(try SkopeoDir.verify(directory: work + "/a", expected: image.blobs) == [])
            for blob in image.blobs {
                let hex = String(blob.digest.dropFirst(7))
                await eventually("\(blob.digest) not in both tiers") { site.cachedBlobHexes().contains(hex) && central.cachedBlobHexes().contains(hex) }
            }
            let centralBlobRequests = central.mirror.stats.requests[.blob]!.value
            let second = try await Skopeo.copy(source: "docker://\(site.host)/team/app:v1", destinationDirectory: work + "/b")
            #expect(second.status == 0, "\(second.output)")
            #expect(central.mirror.stats.requests[.blob]!.value == centralBlobRequests, "the site asked central for blobs it has")

            // Central and the real registry go away: the site still serves everything it holds.
            await central.stop()
            await upstream.stop()
            let offline = try await Skopeo.copy(source: "docker://\(site.host)/team/app:v1", destinationDirectory: work + "/c")
            #expect(offline.status == 0, "\(offline.output)")
            #expect(try SkopeoDir.verify(directory: work + "/c", expected: image.blobs) == [])
        } catch {
            Issue.record(error)
            await central.stop()
            await upstream.stop()
        }
        await site.stop()
        try? FileManager.default.removeItem(atPath: work)
    }
}
