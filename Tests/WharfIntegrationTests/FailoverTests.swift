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
import WharfUpstream

/// Upstream failover chains against real processes on loopback: two Distribution 2.8 registries with
/// the same images (`a`, Wharf's upstream, and `b`, its fallback), a tampering proxy that hangs `a`,
/// and a lying fallback.
@Suite(.serialized, .timeLimit(.minutes(10)), .tags(.integration, .realClients))
struct FailoverTests {
    /// What a test started, stopped in reverse order however the test ends (registries last).
    final class Registries: Sendable {
        let a: UpstreamEnvironment
        let b: UpstreamEnvironment
        private let stops = Mutex<[@Sendable () async -> Void]>([])

        init() throws {
            self.a = try UpstreamEnvironment()
            self.b = try UpstreamEnvironment()
        }

        func onStop(_ stop: @escaping @Sendable () async -> Void) { self.stops.withLock { $0.append(stop) } }

        func stopAll() async {
            for stop in self.stops.withLock({ $0 }).reversed() { await stop() }
            await self.a.stop()
            await self.b.stop()
        }
    }

    /// Starts both registries after `seed`, runs `body`, and stops everything in a task of its own (so
    /// a test cancelled by its time limit still stops its processes). Errors are recorded as failures.
    static func withRegistries(
        seed: (UpstreamEnvironment, UpstreamEnvironment) throws -> Void, sourceLocation: SourceLocation = #_sourceLocation,
        _ body: (Registries) async throws -> Void
    ) async throws {
        let r = try Registries()
        do {
            try seed(r.a, r.b)
            try await r.a.start()
            try await r.b.start()
            try await body(r)
        } catch {
            Issue.record(error, sourceLocation: sourceLocation)
        }
        await Task { await r.stopAll() }.value
    }

    /// Wharf with one upstream, `primary`, and its `fallbacks`.
    static func startWharf(
        primary: String, fallbacks: [String], firstByteTimeout: Duration? = nil, tagTTL: Duration = .seconds(300), clock: WharfClock = .system,
        _ r: Registries
    ) async throws -> WharfInstance {
        var configuration = try UpstreamConfiguration(name: "hub", url: primary, tagTTL: tagTTL)
        if let firstByteTimeout { configuration.firstByteTimeout = firstByteTimeout }
        let upstream = MirrorUpstream(configuration: configuration, isDefault: true, fallbacks: fallbacks.map { UpstreamFallback(url: $0) })
        let wharf = try await WharfInstance.start(upstreams: [upstream], clock: clock)
        r.onStop { await wharf.stop() }
        return wharf
    }

    static func get(_ path: String, _ port: Int, method: String = "GET") async throws -> RawHTTP.Response {
        try await RawHTTP.request("\(method) \(path) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: port)
    }

    static func timed<T>(_ body: () async throws -> T) async rethrows -> (T, Duration) {
        let started = ContinuousClock.now
        let value = try await body()
        return (value, ContinuousClock.now - started)
    }

    /// The value of the `/metrics` series `name` whose labels include every one of `labels`.
    static func metric(_ text: String, _ name: String, _ labels: [String: String]) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + "{") {
            guard labels.allSatisfy({ line.contains("\($0.key)=\"\($0.value)\"") }), let value = line.split(separator: " ").last else { continue }
            return Double(value)
        }
        return nil
    }

    static func ms(_ d: Duration) -> String {
        String(format: "%.0f ms", Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15)
    }

    @Test("the upstream stops midway: skopeo keeps pulling (blobs from the fallback, an uncached tag resolved there and marked stale), counted; once the upstream is back its tags are confirmed by it again")
    func upstreamStopsMidway() async throws {
        var images: [String: GeneratedImage] = [:]
        try await Self.withRegistries(seed: { a, b in
            for (name, format) in [("one", ManifestFormat.dockerSchema2), ("two", .oci), ("three", .dockerSchema2), ("four", .oci)] {
                images[name] = try a.generator.image(layerSizes: [300_000, 1_000_000], format: format)
                for registry in [a, b] { try registry.storage.add(image: images[name]!, repository: "team/\(name)", tag: "v1") }
            }
        }) { r in
            let (one, two, three, four) = (images["one"]!, images["two"]!, images["three"]!, images["four"]!)
            let wharf = try await Self.startWharf(primary: r.a.registry.url, fallbacks: [r.b.registry.url], r)
            let fallback = wharf.mirror.upstreamChain.fallbacks[0]
            let out = try TempDirectory.make("failover")
            r.onStop { try? FileManager.default.removeItem(atPath: out) }

            // The upstream is up: everything comes from it, the fallback is never asked.
            let (first, pullFromUpstream) = try await Self.timed {
                try await Skopeo.copy(source: "docker://\(wharf.host)/team/one:v1", destinationDirectory: out + "/one")
            }
            #expect(first.status == 0, "skopeo failed: \(first.output)")
            #expect(try SkopeoDir.verify(directory: out + "/one", expected: one.blobs) == [])
            let tag3 = try await FreshnessTests.manifest("team/three", "v1", port: wharf.port)
            #expect(tag3.status == 200 && tag3.header("docker-content-digest") == three.manifest.digest && tag3.header("x-wharf-stale") == nil)
            #expect(fallback.client.requestCounts.requests == 0, "the fallback was asked while the upstream was up")

            // The upstream stops between the tag and the blobs of `three`.
            let upstreamPort = r.a.registry.port
            try await r.a.registry.stop()
            let (blob, firstBlobFailover) = try await Self.timed { try await Self.get("/v2/team/three/blobs/\(three.layers[1].digest)", wharf.port) }
            #expect(blob.status == 200 && blob.body.count == three.layers[1].size)
            let third = try await Skopeo.copy(source: "docker://\(wharf.host)/team/three:v1", destinationDirectory: out + "/three")
            #expect(third.status == 0, "skopeo failed once the upstream stopped: \(third.output)")
            #expect(try SkopeoDir.verify(directory: out + "/three", expected: three.blobs) == [])
            await eventually("the upstream's blob circuit did not open after three refused connections") {
                wharf.mirror.upstream.health.circuits?["blob"] == .open
            }

            // An uncached tag: the upstream is unreachable, so the fallback resolves it, marked stale.
            let (tag2, firstTagFailover) = try await Self.timed { try await FreshnessTests.manifest("team/two", "v1", port: wharf.port) }
            #expect(tag2.status == 200 && tag2.header("docker-content-digest") == two.manifest.digest)
            #expect(tag2.header("x-wharf-stale") == "true", "a tag only a fallback confirmed must be marked stale")
            let second = try await Skopeo.copy(source: "docker://\(wharf.host)/team/two:v1", destinationDirectory: out + "/two")
            #expect(second.status == 0, "skopeo failed: \(second.output)")
            #expect(try SkopeoDir.verify(directory: out + "/two", expected: two.blobs) == [])

            // With both circuits open a whole pull costs the upstream nothing.
            let (fourth, pullFromFallback) = try await Self.timed {
                try await Skopeo.copy(source: "docker://\(wharf.host)/team/four:v1", destinationDirectory: out + "/four")
            }
            #expect(fourth.status == 0, "skopeo failed: \(fourth.output)")
            #expect(try SkopeoDir.verify(directory: out + "/four", expected: four.blobs) == [])
            let again = try await Skopeo.copy(source: "docker://\(wharf.host)/team/one:v1", destinationDirectory: out + "/one-again")
            #expect(again.status == 0, "skopeo failed: \(again.output)")
            #expect(try SkopeoDir.verify(directory: out + "/one-again", expected: one.blobs) == [])
            let circuitOpen = wharf.mirror.upstream.health.circuits?["manifest"] == .open && wharf.mirror.upstream.health.circuits?["blob"] == .open
            #expect(circuitOpen, "\(String(describing: wharf.mirror.upstream.health.circuits))")

            // Counted in /stats and /metrics; the fallback saw the blobs and the tags.
            let stats = wharf.mirror.statsSnapshot(showNames: true).upstreams[0].fallbacks[0]
            #expect(stats.name == "127.0.0.1:\(r.b.registry.port)" && stats.url == r.b.registry.url)
            // three: config + 2 layers; two and four: 3 blobs each.
            #expect(stats.failovers.blobs >= 9, "\(stats.failovers)")
            #expect(stats.failovers.manifests >= 2 && stats.failovers.unconfirmedTags >= 2, "\(stats.failovers)")
            let metrics = String(decoding: wharf.mirror.prometheusText(), as: UTF8.self)
            let labels = ["upstream": "hub", "fallback": "127.0.0.1:\(r.b.registry.port)"]
            #expect(Self.metric(metrics, "wharf_upstream_failovers_total", labels.merging(["kind": "blob"]) { $1 }) == Double(stats.failovers.blobs))
            #expect(Self.metric(metrics, "wharf_upstream_failovers_total", labels.merging(["kind": "manifest"]) { $1 }) == Double(stats.failovers.manifests))
            #expect(Self.metric(metrics, "wharf_upstream_unconfirmed_tags_total", labels) == Double(stats.failovers.unconfirmedTags))
            let fallbackLog = try r.b.registry.accessLog()
            #expect(fallbackLog.contains { $0.method == "GET" && $0.path == "/v2/team/four/blobs/\(four.layers[1].digest)" })
            #expect(fallbackLog.contains { $0.path == "/v2/team/two/manifests/v1" })
            #expect(!fallbackLog.contains { $0.path.hasPrefix("/v2/team/one/") }, "the fallback served what the upstream had already given")

            // The upstream comes back on the same port: after its circuit's cooldown (10 s) a trial
            // request reaches it, and the tag it confirms is no longer stale.
            try await r.a.registry.start(port: upstreamPort)
            let restarted = ContinuousClock.now
            await eventually(within: .seconds(30), "the tag was never confirmed by the upstream again") {
                let answer = try? await FreshnessTests.manifest("team/two", "v1", port: wharf.port)
                return answer?.status == 200 && answer?.header("x-wharf-stale") == nil
            }
            let backToUpstream = ContinuousClock.now - restarted
            #expect(try r.a.registry.requestCount(method: "HEAD", pathContaining: "/v2/team/two/manifests/v1") >= 1)
            print("""
                failover timing (upstream stopped, connection refused): first blob \(Self.ms(firstBlobFailover)), \
                first uncached tag \(Self.ms(firstTagFailover)); skopeo pull of a 2-layer image: \(Self.ms(pullFromUpstream)) from the upstream, \
                \(Self.ms(pullFromFallback)) from the fallback with the upstream's circuits open; tags confirmed by the upstream again \
                \(Self.ms(backToUpstream)) after it restarted
                """)
        }
    }

    @Test("a hung upstream: blobs and an uncached tag come from the fallback after the first-byte timeout (1 s here), at once once the circuit opened")
    func hungUpstream() async throws {
        var image: GeneratedImage!, other: GeneratedImage!
        try await Self.withRegistries(seed: { a, b in
            image = try a.generator.image(layerSizes: [200_000, 400_000, 600_000], format: .oci)
            other = try a.generator.image(layerSizes: [100_000], format: .oci)
            for registry in [a, b] {
                try registry.storage.add(image: image, repository: "team/app", tag: "v1")
                try registry.storage.add(image: other, repository: "team/other", tag: "v1")
            }
        }) { r in
            let proxy = TamperingProxy(upstream: r.a.registry.url)
            try await proxy.start()
            r.onStop { try? await proxy.stop() }
            let wharf = try await Self.startWharf(primary: proxy.url, fallbacks: [r.b.registry.url], firstByteTimeout: .seconds(1), r)
            // A first pull while the upstream answers (its token fetched). Beside the whole suite on 2
            // cores even this can miss the 1 s first-byte timeout and come from the fallback: the
            // failovers below are counted from here.
            let tag = try await FreshnessTests.manifest("team/app", "v1", port: wharf.port)
            #expect(tag.status == 200)
            let before = wharf.mirror.upstreamChain.fallbacks[0].failovers
            proxy.setHanging(true)

            // Three different uncached blobs at once: each waits for the first-byte timeout, then the fallback.
            let blobs = try await withThrowingTaskGroup(of: (Bool, Duration).self) { group in
                for layer in image.layers {
                    group.addTask {
                        let (answer, time) = try await Self.timed { try await Self.get("/v2/team/app/blobs/\(layer.digest)", wharf.port) }
                        return (answer.status == 200 && answer.body.count == layer.size, time)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            for (complete, time) in blobs {
                #expect(complete)
                #expect(time >= .milliseconds(950) && time < .seconds(5), "a blob took \(time)")
            }
            let (tag2, tagTime) = try await Self.timed { try await FreshnessTests.manifest("team/other", "v1", port: wharf.port) }
            #expect(tag2.status == 200 && tag2.header("docker-content-digest") == other.manifest.digest && tag2.header("x-wharf-stale") == "true")
            #expect(tagTime >= .milliseconds(950) && tagTime < .seconds(5), "the tag took \(tagTime)")
            #expect(proxy.heldRequests >= 4)

            // Timeouts on three different blobs ask for a probe, which hangs too (5 s): the blob circuit
            // opens and the next uncached blob goes to the fallback at once.
            await eventually(within: .seconds(15), "the blob circuit did not open") { wharf.mirror.upstream.health.circuits?["blob"] == .open }
            let held = proxy.heldRequests
            let (config, openTime) = try await Self.timed { try await Self.get("/v2/team/other/blobs/\(other.config.digest)", wharf.port) }
            #expect(config.status == 200 && config.body.count == other.config.size)
            #expect(openTime < .milliseconds(500), "with the circuit open a blob still waited \(openTime)")
            #expect(proxy.heldRequests == held, "the open circuit let a request through to the hung upstream")
            let failovers = wharf.mirror.upstreamChain.fallbacks[0].failovers
            #expect(
                failovers.blobs - before.blobs == 4 && failovers.manifests - before.manifests == 1 && failovers.tags - before.tags == 1,
                "\(before) → \(failovers)")
            print("""
                failover timing (hung upstream, first-byte-timeout 1 s): blobs \(blobs.map { Self.ms($0.1) }.joined(separator: ", ")), \
                uncached tag \(Self.ms(tagTime)); with the circuit open: blob \(Self.ms(openTime))
                """)
        }
    }

    @Test("a fallback that serves other bytes for a digest is refused: manifest 502, blob never complete, nothing stored; its 404 is not the answer")
    func lyingFallback() async throws {
        var image: GeneratedImage!, decoy: GeneratedImage!
        try await Self.withRegistries(seed: { a, _ in
            image = try a.generator.image(layerSizes: [300_000], format: .oci)
            decoy = try a.generator.image(layerSizes: [1000], format: .oci)
            try a.storage.add(image: image, repository: "team/app", tag: "v1")
        }) { r in
            let hostile = HostileUpstream()
            try await hostile.start()
            r.onStop { await hostile.stop() }
            // The decoy's manifest under the image's digest, and the layer's size in other bytes.
            let lie = try decoy.manifest.data()
            hostile.script("/v2/team/app/manifests/\(image.manifest.digest)", .respond(LoopbackHTTPResponse(
                status: .ok, headers: ["Content-Type": image.manifest.mediaType, "Docker-Content-Digest": image.manifest.digest],
                body: ByteBuffer(bytes: lie))))
            let layer = image.layers[0]
            hostile.script("/v2/team/app/blobs/\(layer.digest)", .respond(LoopbackHTTPResponse(
                status: .ok, headers: ["Content-Type": "application/octet-stream", "Docker-Content-Digest": layer.digest],
                body: ByteBuffer(repeating: 0x5A, count: layer.size))))
            let wharf = try await Self.startWharf(primary: r.a.registry.url, fallbacks: [hostile.url], r)
            try await r.a.registry.stop()

            let manifest = try await Self.get("/v2/team/app/manifests/\(image.manifest.digest)", wharf.port)
            #expect(manifest.status == 502, "\(manifest.status) \(manifest.bodyText)")
            #expect(!manifest.bodyText.contains(decoy.config.digest), "the lie reached the client")
            let stored = try wharf.mirror.index.manifest(Digest(parsing: image.manifest.digest))
            #expect(stored == nil, "the lie was stored")
            #expect(hostile.count(pathPrefix: "/v2/team/app/manifests/\(image.manifest.digest)") >= 1, "the fallback was not asked")

            let blob = try await Self.get("/v2/team/app/blobs/\(layer.digest)", wharf.port)
            let complete = blob.status == 200 && blob.body.count == layer.size && blob.declaredLength == layer.size
            #expect(!complete, "a blob that does not match its digest reached the client complete")
            #expect(hostile.count(pathPrefix: "/v2/team/app/blobs/") >= 1, "the fallback was not asked")
            await eventually("the fill did not fail") { wharf.mirror.stats.fillsFailed.value >= 1 }
            let cachedBlob = try wharf.mirror.index.blob(Digest(parsing: layer.digest))
            #expect(!wharf.cachedBlobHexes().contains(layer.hex) && cachedBlob == nil)
            #expect(wharf.mirror.stats.digestMismatches.value >= 2)

            // A tag: the fallback (unscripted) answers 404, which is not the upstream's word: 503, not 404.
            let tag = try await FreshnessTests.manifest("team/app", "v1", port: wharf.port)
            #expect(tag.status == 503 && tag.bodyText.contains("UNAVAILABLE"), "\(tag.status) \(tag.bodyText)")
            #expect(hostile.count(pathPrefix: "/v2/team/app/manifests/v1") == 1)
        }
    }

    @Test("the upstream's 404 and 401 are final: the fallback, which has the content, is never asked")
    func notFoundIsAuthoritative() async throws {
        var image: GeneratedImage!, onlyInFallback: GeneratedImage!
        try await Self.withRegistries(seed: { a, b in
            image = try a.generator.image(layerSizes: [1000], format: .oci)
            onlyInFallback = try a.generator.image(layerSizes: [2000], format: .oci)
            try a.storage.add(image: image, repository: "team/app", tag: "v1")
            try a.storage.add(image: image, repository: "private/secret", tag: "v1")
            try b.storage.add(image: image, repository: "team/app", tag: "v1")
            try b.storage.add(image: onlyInFallback, repository: "team/app", tag: "only-b")
            try b.storage.add(image: onlyInFallback, repository: "private/secret", tag: "v1")
        }) { r in
            let wharf = try await Self.startWharf(primary: r.a.registry.url, fallbacks: [r.b.registry.url], r)
            let fallback = wharf.mirror.upstreamChain.fallbacks[0]
            let tag = try await FreshnessTests.manifest("team/app", "only-b", port: wharf.port)
            #expect(tag.status == 404 && tag.bodyText.contains("MANIFEST_UNKNOWN"), "\(tag.status) \(tag.bodyText)")
            let byDigest = try await Self.get("/v2/team/app/manifests/\(onlyInFallback.manifest.digest)", wharf.port)
            #expect(byDigest.status == 404 && byDigest.bodyText.contains("MANIFEST_UNKNOWN"))
            let blob = try await Self.get("/v2/team/app/blobs/\(onlyInFallback.layers[0].digest)", wharf.port)
            #expect(blob.status == 404 && blob.bodyText.contains("BLOB_UNKNOWN"))
            let head = try await Self.get("/v2/team/app/blobs/\(onlyInFallback.config.digest)", wharf.port, method: "HEAD")
            #expect(head.status == 404)
            // A private repository: the upstream's token server refuses the scope (401), which is final too.
            let secret = try await FreshnessTests.manifest("private/secret", "v1", port: wharf.port)
            #expect(secret.status == 404, "\(secret.status) \(secret.bodyText)")
            #expect(try r.a.registry.requestCount(method: "GET", pathContaining: "/v2/team/app/manifests/only-b") >= 1)
            #expect(fallback.client.requestCounts.requests == 0, "the fallback was asked after the upstream's 404/401")
            #expect(!(try r.b.registry.accessLog().contains { $0.path.hasPrefix("/v2/team/") || $0.path.hasPrefix("/v2/private/") }))
            #expect(fallback.failovers == (0, 0, 0))
        }
    }

    @Test("while the upstream answers, tags never come from the fallback (its 503 included: then stale, or 503), while a digest may")
    func upstreamUpKeepsItsTags() async throws {
        var x1: GeneratedImage!, x2: GeneratedImage!, y1: GeneratedImage!, y2: GeneratedImage!
        try await Self.withRegistries(seed: { a, b in
            x1 = try a.generator.image(layerSizes: [1000], format: .oci)
            x2 = try a.generator.image(layerSizes: [2000], format: .oci)
            y1 = try b.generator.image(layerSizes: [3000], format: .oci)
            y2 = try b.generator.image(layerSizes: [4000], format: .oci)
            try a.storage.add(image: x1, repository: "team/app", tag: "v1")
            try a.storage.add(image: x2, repository: "team/app", tag: "v2")
            // The fallback maps the same tags elsewhere (a mirror that lags or differs), and holds x2 by digest.
            try b.storage.add(image: y1, repository: "team/app", tag: "v1")
            try b.storage.add(image: y2, repository: "team/app", tag: "v2")
            try b.storage.add(image: x2, repository: "team/app", tag: nil)
        }) { r in
            let clock = ManualClock()
            let proxy = TamperingProxy(upstream: r.a.registry.url)
            try await proxy.start()
            r.onStop { try? await proxy.stop() }
            let wharf = try await Self.startWharf(primary: proxy.url, fallbacks: [r.b.registry.url], tagTTL: .seconds(60), clock: clock.clock, r)
            let fallback = wharf.mirror.upstreamChain.fallbacks[0]

            let v1 = try await FreshnessTests.manifest("team/app", "v1", port: wharf.port)
            #expect(v1.status == 200 && v1.header("docker-content-digest") == x1.manifest.digest && v1.header("x-wharf-stale") == nil)
            #expect(fallback.client.requestCounts.requests == 0)

            // The upstream answers 503 to every manifest request: it is up, so its tags stay its own.
            proxy.setManifestOverride(status: 503)
            let v2 = try await FreshnessTests.manifest("team/app", "v2", port: wharf.port)
            #expect(v2.status == 503 && v2.bodyText.contains("UNAVAILABLE"), "\(v2.status) \(v2.bodyText)")
            clock.advance(by: .seconds(61))
            let stale = try await FreshnessTests.manifest("team/app", "v1", port: wharf.port)
            #expect(stale.status == 200 && stale.header("docker-content-digest") == x1.manifest.digest && stale.header("x-wharf-stale") == "true")
            #expect(fallback.client.requestCounts.requests == 0, "a tag was asked of the fallback while the upstream answered")

            // A digest may come from any source: verified, stored, and the fallback is counted.
            let byDigest = try await Self.get("/v2/team/app/manifests/\(x2.manifest.digest)", wharf.port)
            let x2Bytes = Array(try x2.manifest.data())
            #expect(byDigest.status == 200 && byDigest.body == x2Bytes)
            let stored = try wharf.mirror.index.manifest(Digest(parsing: x2.manifest.digest))
            #expect(stored != nil)
            #expect(fallback.failovers == (1, 0, 0))
            let fallbackLog = try r.b.registry.accessLog()
            #expect(!fallbackLog.contains { $0.path.hasSuffix("/manifests/v1") || $0.path.hasSuffix("/manifests/v2") })
            #expect(proxy.count(method: "GET", pathContaining: "/manifests/v2") >= 1)
        }
    }
}
