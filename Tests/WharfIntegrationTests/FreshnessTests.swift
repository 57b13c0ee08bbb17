import Foundation
import Testing
import WharfClock
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
        let clock = ManualClock()
        var a: GeneratedImage!, b: GeneratedImage!
        try await withWharf(tagTTL: .seconds(2), clock: clock.clock, seed: { upstream in
            a = try upstream.generator.image(layerSizes: [1000], format: .oci)
            b = try upstream.generator.image(layerSizes: [2000], format: .oci)
            try upstream.storage.add(image: a, repository: "team/app", tag: "v1")
            try upstream.storage.add(image: b, repository: "team/app", tag: "other")
        }) { f in
            let (wharf, registry) = (f.wharf, f.upstream.registry)
            #expect(try await Self.manifest("team/app", "v1", port: wharf.port).header("docker-content-digest") == a.manifest.digest)
            clock.advance(by: .seconds(3))  // past the 2 s TTL
            let gets = try Self.manifestRequests(registry, "GET"), heads = try Self.manifestRequests(registry, "HEAD")
            #expect(try await Self.manifest("team/app", "v1", port: wharf.port).header("docker-content-digest") == a.manifest.digest)
            // Distribution writes its access log line after answering.
            try await eventually("the revalidation HEAD is not in the upstream's log") { try Self.manifestRequests(registry, "HEAD") == heads + 1 }
            #expect(try Self.manifestRequests(registry, "GET") == gets, "revalidating an unchanged tag cost a manifest GET")
            #expect(wharf.mirror.stats.revalidations.value == 1)

            // The revalidated answer was stored at the clock's time: fresh again.
            try f.upstream.storage.setTag("v1", repository: "team/app", manifestDigest: b.manifest.digest)
            #expect(try await Self.manifest("team/app", "v1", port: wharf.port).header("docker-content-digest") == a.manifest.digest, "visible before the TTL")
            clock.advance(by: .seconds(3))
            let after = try await Self.manifest("team/app", "v1", port: wharf.port)
            #expect(after.header("docker-content-digest") == b.manifest.digest, "retag not visible after the TTL")
            #expect(Data(after.body) == (try b.manifest.data()))
        }
    }

    @Test("within stale-while-revalidate an expired tag answers at once while one background revalidation picks up the retag")
    func staleWhileRevalidate() async throws {
        let clock = ManualClock()
        var a: GeneratedImage!, b: GeneratedImage!
        try await withWharf(tagTTL: .seconds(300), staleWhileRevalidate: .seconds(3600), clock: clock.clock, seed: { upstream in
            a = try upstream.generator.image(layerSizes: [1000], format: .oci)
            b = try upstream.generator.image(layerSizes: [2000], format: .oci)
            try upstream.storage.add(image: a, repository: "team/app", tag: "v1")
            try upstream.storage.add(image: b, repository: "team/app", tag: "other")
        }, proxy: true) { f in
            let (wharf, proxy, registry) = (f.wharf, f.proxy!, f.upstream.registry)
            #expect(try await Self.manifest("team/app", "v1", port: wharf.port).header("docker-content-digest") == a.manifest.digest)
            try f.upstream.storage.setTag("v1", repository: "team/app", manifestDigest: b.manifest.digest)
            proxy.setManifestDelay(.seconds(3))  // a far, slow upstream
            clock.advance(by: .seconds(301))  // past the 5-minute TTL, inside the 1-hour window

            // Answered from the cache at once, marked stale; one revalidation runs behind it.
            var times: [Duration] = []
            for _ in 0..<3 {
                let started = ContinuousClock.now
                let stale = try await Self.manifest("team/app", "v1", port: wharf.port)
                times.append(ContinuousClock.now - started)
                #expect(stale.status == 200 && stale.header("docker-content-digest") == a.manifest.digest)
                #expect(stale.header("x-wharf-stale") == "true" && stale.header("warning")?.hasPrefix("110") == true)
            }
            // The upstream takes 3 s per manifest request: an answer in under 1 s did not wait for it
            // (alone, these take 2-10 ms; the whole suite's load can stretch them to a few hundred).
            for t in times { #expect(t < .seconds(1), "a stale-while-revalidate answer took \(t)") }
            #expect(wharf.mirror.manifests.revalidations.inFlight == 1, "not exactly one background revalidation")
            #expect(wharf.mirror.stats.staleWhileRevalidateServes.value == 3)

            // Once it has run (HEAD, then GET of the new digest, each delayed 3 s) the next request sees the new digest.
            await eventually(within: .seconds(20), "the background revalidation did not finish") { wharf.mirror.manifests.revalidations.inFlight == 0 }
            let fresh = try await Self.manifest("team/app", "v1", port: wharf.port)
            #expect(fresh.header("docker-content-digest") == b.manifest.digest && fresh.header("x-wharf-stale") == nil)
            try await eventually("the upstream's log lacks the revalidation") {
                try Self.manifestRequests(registry, "HEAD") == 1 && Self.manifestRequests(registry, "GET") == 2
            }

            // Past the window: the request waits for the revalidation again.
            clock.advance(by: .seconds(301 + 3600))
            let started = ContinuousClock.now
            let late = try await Self.manifest("team/app", "v1", port: wharf.port)
            #expect(late.header("docker-content-digest") == b.manifest.digest && late.header("x-wharf-stale") == nil)
            #expect(ContinuousClock.now - started >= .seconds(3), "outside the window the answer did not wait for the upstream")
        }
    }

    @Test("with the upstream gone, cached images still pull (marked stale) and uncached ones fail fast")
    func upstreamDown() async throws {
        let clock = ManualClock()
        var image: GeneratedImage!
        try await withWharf(tagTTL: .seconds(1), clock: clock.clock, seed: { upstream in
            image = try upstream.generator.image(layerSizes: [300_000], format: .dockerSchema2)
            try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        }) { f in
            let wharf = f.wharf
            let out = try TempDirectory.make("skopeo-offline")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let warm = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app:v1", destinationDirectory: out + "/a", extraArguments: [], timeout: .seconds(60))
            #expect(warm.status == 0, "\(warm.output)")
            try await f.upstream.registry.stop()
            clock.advance(by: .seconds(2))  // past the 1 s TTL: the tag needs the upstream

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
        }
    }

    @Test("an upstream answering 429: cached tags are served stale, others get 429 with Retry-After")
    func rateLimited() async throws {
        let clock = ManualClock()
        try await withWharf(tagTTL: .seconds(1), clock: clock.clock, seed: { upstream in
            let image = try upstream.generator.image(layerSizes: [1000], format: .oci)
            try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
            try upstream.storage.setTag("v2", repository: "team/app", manifestDigest: image.manifest.digest)
        }, proxy: true) { f in
            let (wharf, proxy) = (f.wharf, f.proxy!)
            #expect(try await Self.manifest("team/app", "v1", port: wharf.port).status == 200)
            proxy.setManifestOverride(status: 429, retryAfter: 30)
            clock.advance(by: .seconds(2))  // past the 1 s TTL
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
        }
    }

    @Test("upstream 404s are remembered briefly")
    func negativeCaching() async throws {
        try await withWharf(seed: { upstream in
            let image = try upstream.generator.image(layerSizes: [1000], format: .oci)
            try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        }) { f in
            for _ in 0..<3 {
                let r = try await Self.manifest("team/app", "missing", port: f.wharf.port)
                #expect(r.status == 404 && r.bodyText.contains("MANIFEST_UNKNOWN"))
            }
            let asked = { try f.upstream.registry.accessLog().filter { $0.path.contains("/manifests/missing") }.count }
            // Distribution writes its access log line after answering.
            try await eventually("the upstream's log shows no request for the missing tag") { try asked() >= 1 }
            let count = try asked()
            #expect(count == 1, "upstream asked \(count) times")
            #expect(f.wharf.mirror.stats.negativeHits.value == 2)
        }
    }
}
