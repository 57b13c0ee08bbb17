import Foundation
import OCIDistribution
import Testing
import WharfMirror
import WharfTestSupport
import WharfUpstream

/// Issue #12, bug 5, against a real Distribution behind the tampering proxy slowed to 40 KB/s for
/// blob bodies: slow fills fill the blob pool, yet manifests (their own pool) still answer at once,
/// requests that wait for a pooled connection are not upstream failures, and the breaker stays closed.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct PoolStarvationTests {
    @Test("slow blob fills that fill the blob pool starve neither manifests nor the breaker")
    func slowFillsDoNotStarveManifests() async throws {
        let upstream = try UpstreamEnvironment()
        let slow = try upstream.generator.image(layerSizes: [120_000, 120_000, 120_000], format: .oci)
        let other = try upstream.generator.image(layerSizes: [10_000], format: .oci)
        try upstream.storage.add(image: slow, repository: "team/slow", tag: "v1")
        try upstream.storage.add(image: other, repository: "team/other", tag: "v1")
        try await upstream.start()
        let proxy = TamperingProxy(upstream: upstream.registry.url)
        try await proxy.start()
        proxy.setMode(.throttle(bytesPerSecond: 40_000))
        let config = try UpstreamConfiguration(name: "test-upstream", url: proxy.url)
        let wharf = try await WharfInstance.start(
            upstreams: [MirrorUpstream(configuration: config, isDefault: true)],
            httpClients: UpstreamHTTPClients.make(blobConnectionsPerHost: 1, metadataConnectionsPerHost: 4))
        do {
            #expect(try await Self.get("/v2/team/slow/manifests/v1", wharf.port).status == 200)
            // Three slow layers at once through a blob pool of one connection (about 3 s each).
            let pulls = slow.layers.map { layer in
                Task { (try await Self.get("/v2/team/slow/blobs/\(layer.digest)", wharf.port), ContinuousClock.now) }
            }
            let asked = ContinuousClock.now
            let manifest = try await Self.get("/v2/team/other/manifests/v1", wharf.port)
            let answered = ContinuousClock.now
            var complete = 0
            var firstPullDone: ContinuousClock.Instant?
            for (layer, pull) in zip(slow.layers, pulls) {
                let (r, done) = try await pull.value
                firstPullDone = min(firstPullDone ?? done, done)
                if r.status == 200, Digest.sha256(of: r.body).description == layer.digest { complete += 1 }
                #expect(r.status == 200 || r.status >= 400, "a pull ended as \(r.status) with \(r.body.count) bytes")
            }
            // Not queued behind the blob pool: answered before even the first slow layer (about 3 s) is
            // through, let alone all three. (A fixed bound in seconds failed under the whole suite's
            // disk load, where a manifest's durable store waits for other tests' fsyncs.)
            #expect(manifest.status == 200, "status \(manifest.status)")
            #expect(answered < firstPullDone ?? answered, "the unrelated manifest took \(answered - asked), the first slow layer \((firstPullDone ?? asked) - asked)")
            #expect(complete >= 1, "at least the first slow layer arrives whole")
            let health = wharf.mirror.upstream.health
            #expect(health.circuit == .closed && health.reachable != false, "\(health)")
            #expect(wharf.mirror.upstream.requestCounts.errors == 0, "pool waits counted as upstream errors")
            #expect(try await Self.get("/v2/team/other/manifests/v1", wharf.port).status == 200)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        try? await proxy.stop()
        await upstream.stop()
    }

    static func get(_ path: String, _ port: Int) async throws -> RawHTTP.Response {
        try await RawHTTP.request("GET \(path) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: port)
    }
}
