import Foundation
import Testing
import WharfMirror
import WharfTestSupport
import WharfUpstream

/// Tag TTLs, HEAD revalidation, stale-if-error, 429 back-off, negative caching and the circuit breaker.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration, .realClients))
struct FreshnessTests {
    static let acceptAll = "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json\r\n"

    static func manifest(_ repo: String, _ ref: String, port: Int) async throws -> RawHTTP.Response {
        try await RawHTTP.request("GET /v2/\(repo)/manifests/\(ref) HTTP/1.1\r\nHost: w\r\n\(acceptAll)Connection: close\r\n\r\n", port: port)
    }

    static func manifestRequests(_ registry: RegistryProcess, _ method: String) throws -> Int {
        try registry.accessLog().filter { $0.method == method && $0.path.contains("/manifests/") }.count
    }

    @Test("a retag shows after the TTL, not before; unchanged tags revalidate with HEAD only")
    func retagAndRevalidate() async throws {
        let upstream = try UpstreamEnvironment()
        let a = try upstream.generator.image(layerSizes: [1000], format: .oci)
        let b = try upstream.generator.image(layerSizes: [2000], format: .oci)
        try upstream.storage.add(image: a, repository: "team/app", tag: "v1")
        try upstream.storage.add(image: b, repository: "team/app", tag: "other")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url, tagTTL: .seconds(2))
        do {
            #expect(try await Self.manifest("team/app", "v1", port: wharf.port).header("docker-content-digest") == a.manifest.digest)
            try await Task.sleep(for: .milliseconds(2500))
            let gets = try Self.manifestRequests(upstream.registry, "GET"), heads = try Self.manifestRequests(upstream.registry, "HEAD")
            #expect(try await Self.manifest("team/app", "v1", port: wharf.port).header("docker-content-digest") == a.manifest.digest)
            try await Task.sleep(for: .milliseconds(300))
            #expect(try Self.manifestRequests(upstream.registry, "GET") == gets, "revalidating an unchanged tag cost a manifest GET")
            #expect(try Self.manifestRequests(upstream.registry, "HEAD") == heads + 1)
            #expect(wharf.mirror.stats.revalidations.value == 1)

            try upstream.storage.setTag("v1", repository: "team/app", manifestDigest: b.manifest.digest)
            #expect(try await Self.manifest("team/app", "v1", port: wharf.port).header("docker-content-digest") == a.manifest.digest, "visible before the TTL")
            try await Task.sleep(for: .milliseconds(2500))
            let after = try await Self.manifest("team/app", "v1", port: wharf.port)
            #expect(after.header("docker-content-digest") == b.manifest.digest, "retag not visible after the TTL")
            #expect(Data(after.body) == (try b.manifest.data()))
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }

    @Test("with the upstream gone, cached images still pull (marked stale) and uncached ones fail fast")
    func upstreamDown() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [300_000], format: .dockerSchema2)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url, tagTTL: .seconds(1))
        do {
            let out = try TempDirectory.make("skopeo-offline")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let warm = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app:v1", destinationDirectory: out + "/a", extraArguments: [], timeout: .seconds(60))
            #expect(warm.status == 0, "\(warm.output)")
            try await upstream.registry.stop()
            try await Task.sleep(for: .milliseconds(1500))

            let stale = try await Self.manifest("team/app", "v1", port: wharf.port)
            #expect(stale.status == 200)
            #expect(stale.header("x-wharf-stale") == "true")
            let offline = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app:v1", destinationDirectory: out + "/b", extraArguments: [], timeout: .seconds(60))
            #expect(offline.status == 0, "offline pull failed: \(offline.output)")
            #expect(try SkopeoDir.verify(directory: out + "/b", expected: image.blobs) == [])

            for _ in 0..<4 {
                let started = ContinuousClock.now
                let missing = try await Self.manifest("team/app", "never-cached", port: wharf.port)
                #expect(ContinuousClock.now - started < .seconds(3), "an uncached request did not fail fast")
                #expect(missing.status == 503 && missing.bodyText.contains("UNAVAILABLE"))
            }
            #expect(wharf.mirror.upstream.health.circuit == .open)
            #expect(wharf.mirror.stats.staleServes.value >= 2)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }

    @Test("an upstream answering 429: cached tags are served stale, others get 429 with Retry-After")
    func rateLimited() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [1000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try upstream.storage.setTag("v2", repository: "team/app", manifestDigest: image.manifest.digest)
        try await upstream.start()
        let proxy = TamperingProxy(upstream: upstream.registry.url)
        try await proxy.start()
        let wharf = try await WharfInstance.start(upstream: proxy.url, tagTTL: .seconds(1))
        do {
            #expect(try await Self.manifest("team/app", "v1", port: wharf.port).status == 200)
            proxy.setManifestOverride(status: 429, retryAfter: 30)
            try await Task.sleep(for: .milliseconds(1500))
            let stale = try await Self.manifest("team/app", "v1", port: wharf.port)
            #expect(stale.status == 200 && stale.header("x-wharf-stale") == "true")
            let limited = try await Self.manifest("team/app", "v2", port: wharf.port)
            #expect(limited.status == 429 && limited.bodyText.contains("TOOMANYREQUESTS"))
            #expect(Int(limited.header("retry-after") ?? "") ?? 0 > 0, "429 without a usable Retry-After")
            // Backing off: the next requests do not reach the upstream at all.
            let before = proxy.count(method: "GET", pathContaining: "/manifests/") + proxy.count(method: "HEAD", pathContaining: "/manifests/")
            _ = try await Self.manifest("team/app", "v2", port: wharf.port)
            #expect(try await Self.manifest("team/app", "v1", port: wharf.port).status == 200)
            #expect(proxy.count(method: "GET", pathContaining: "/manifests/") + proxy.count(method: "HEAD", pathContaining: "/manifests/") == before)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        try? await proxy.stop()
        await upstream.stop()
    }

    @Test("upstream 404s are remembered briefly")
    func negativeCaching() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [1000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            for _ in 0..<3 {
                let r = try await Self.manifest("team/app", "missing", port: wharf.port)
                #expect(r.status == 404 && r.bodyText.contains("MANIFEST_UNKNOWN"))
            }
            try await Task.sleep(for: .milliseconds(300))
            let asked = try upstream.registry.accessLog().filter { $0.path.contains("/manifests/missing") }.count
            #expect(asked == 1, "upstream asked \(asked) times")
            #expect(wharf.mirror.stats.negativeHits.value == 2)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }
}
