import Foundation
import Testing
import WharfClock
import WharfMirror
import WharfTestSupport
import WharfUpstream

/// An upstream that accepts connections and never answers (the tampering proxy holding every
/// request), with the default timeouts: what it costs a client, and that the breaker counts it.
@Suite(.serialized, .timeLimit(.minutes(3)), .tags(.integration))
struct HungUpstreamTests {
    @Test("a hung upstream: a cached tag is served stale in < 10 s, a cached blob in < 2 s, an uncached tag fails in < 35 s, then the breaker opens")
    func hungUpstream() async throws {
        let clock = ManualClock()
        var image: GeneratedImage!
        try await withWharf(tagTTL: .seconds(300), clock: clock.clock, seed: { upstream in
            image = try upstream.generator.image(layerSizes: [300_000], format: .oci)
            try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        }, proxy: true) { f in
            let (wharf, proxy) = (f.wharf, f.proxy!)
            try await wharf.cache(image.layers, of: "team/app")
            clock.advance(by: .seconds(301))  // the tag needs the upstream again
            proxy.setHanging(true)

            var started = ContinuousClock.now
            let tag = try await FreshnessTests.manifest("team/app", "v1", port: wharf.port)
            let tagTime = ContinuousClock.now - started
            #expect(tag.status == 200 && tag.header("docker-content-digest") == image.manifest.digest)
            #expect(tag.header("x-wharf-stale") == "true")
            #expect(tagTime < .seconds(10), "the cached tag took \(tagTime)")
            #expect(proxy.heldRequests >= 1, "the revalidation never reached the hung upstream")

            started = ContinuousClock.now
            let layer = image.layers[0]
            let blob = try await RawHTTP.request("GET /v2/team/app/blobs/\(layer.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            let blobTime = ContinuousClock.now - started
            #expect(blob.status == 200 && blob.body.count == Int(layer.size))
            #expect(blobTime < .seconds(2), "the cached blob took \(blobTime)")

            // Three different uncached tags at once: each fails within the first-byte timeout.
            let times = try await withThrowingTaskGroup(of: (Int, String, Duration).self) { group in
                for name in ["nope1", "nope2", "nope3"] {
                    group.addTask {
                        let t0 = ContinuousClock.now
                        let r = try await FreshnessTests.manifest("team/app", name, port: wharf.port)
                        return (r.status, r.bodyText, ContinuousClock.now - t0)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            for (status, body, time) in times {
                #expect(status == 503 && body.contains("UNAVAILABLE"), "\(status) \(body)")
                #expect(time < .seconds(35), "an uncached tag took \(time) to fail")
                #expect(time >= .seconds(7), "an uncached tag failed after \(time), before the 8 s first-byte timeout")
            }

            // Timeouts on three different requests ask for a probe; the probe hangs too, so the circuit opens
            // and the next uncached request fails at once.
            await eventually(within: .seconds(15), "the circuit did not open") { wharf.mirror.upstream.health.circuit == .open }
            started = ContinuousClock.now
            let fast = try await FreshnessTests.manifest("team/app", "nope4", port: wharf.port)
            #expect(fast.status == 503 && ContinuousClock.now - started < .seconds(1), "with the circuit open a request still waited")
            let stale = try await FreshnessTests.manifest("team/app", "v1", port: wharf.port)
            #expect(stale.status == 200 && stale.header("x-wharf-stale") == "true")
            print("hung upstream: cached tag \(tagTime), cached blob \(blobTime), uncached tags \(times.map(\.2))")
        }
    }
}
