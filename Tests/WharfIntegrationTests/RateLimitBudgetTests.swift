import Foundation
import Testing
import WharfClock
import WharfMirror
import WharfTestSupport
import WharfUpstream

/// Docker Hub style pull budgets (`RateLimit-Limit` / `RateLimit-Remaining`, counted per manifest
/// `GET`), played by the tampering proxy in front of a real Distribution.
@Suite(.serialized, .timeLimit(.minutes(3)), .tags(.integration, .realClients))
struct RateLimitBudgetTests {
    static func manifestGETs(_ proxy: TamperingProxy) -> Int { proxy.count(method: "GET", pathContaining: "/manifests/") }

    @Test("a falling budget: manifest GETs for cached tags stop at the reserve, every GET stops at 0 (429 without asking), cached images keep pulling")
    func fallingBudget() async throws {
        let clock = ManualClock()
        var images: [GeneratedImage] = []
        var moved: GeneratedImage!
        try await withWharf(tagTTL: .seconds(300), clock: clock.clock, seed: { upstream in
            for i in 0..<6 {
                let image = try upstream.generator.image(layerSizes: [20_000 + i], format: .oci)
                try upstream.storage.add(image: image, repository: "team/app\(i)", tag: "v1")
                images.append(image)
            }
            moved = try upstream.generator.image(layerSizes: [30_000], format: .oci)
            try upstream.storage.add(image: moved, repository: "team/app0", tag: "next")
        }, proxy: true) { f in
            let (wharf, proxy) = (f.wharf, f.proxy!)
            let client = wharf.mirror.upstream
            proxy.setRateLimit(limit: 20, remaining: 5)  // the reserve is 10 % of 20: 2 pulls

            // Uncached tags spend the budget: 5 → 2, the last one into the reserve.
            for i in 0..<3 { try await wharf.cache(images[i].layers, of: "team/app\(i)") }
            #expect(Self.manifestGETs(proxy) == 3 && proxy.rateLimitRemaining == 2)
            #expect(client.rateLimitMode() == .reserve)
            #expect(client.rateLimitBudgets.first?.remaining == 2 && client.rateLimitBudgets.first?.reserve == 2)

            // In the reserve an expired tag that moved upstream is checked with a free HEAD only, and served stale.
            try f.upstream.storage.setTag("v1", repository: "team/app0", manifestDigest: moved.manifest.digest)
            clock.advance(by: .seconds(301))
            let stale = try await FreshnessTests.manifest("team/app0", "v1", port: wharf.port)
            #expect(stale.status == 200 && stale.header("docker-content-digest") == images[0].manifest.digest)
            #expect(stale.header("x-wharf-stale") == "true")
            #expect(Self.manifestGETs(proxy) == 3, "a cached tag spent the reserve")
            #expect(proxy.count(method: "HEAD", pathContaining: "/team/app0/manifests/v1") == 1)
            #expect(wharf.mirror.stats.budgetStaleServes.value == 1)

            // Content nobody has still goes upstream and spends the reserve, down to 0 …
            for i in 3..<5 {
                #expect(try await FreshnessTests.manifest("team/app\(i)", "v1", port: wharf.port).status == 200)
            }
            #expect(Self.manifestGETs(proxy) == 5 && proxy.rateLimitRemaining == 0)
            // … where an uncached manifest gets 429 with Retry-After without asking the upstream.
            let refused = try await FreshnessTests.manifest("team/app5", "v1", port: wharf.port)
            #expect(refused.status == 429 && refused.bodyText.contains("TOOMANYREQUESTS"))
            let retry = refused.header("retry-after").flatMap(Int.init) ?? 0
            #expect((1...300).contains(retry), "Retry-After \(retry)")
            #expect(Self.manifestGETs(proxy) == 5, "the exhausted budget still asked the upstream")
            #expect(client.budgetRefusals == 1)

            // Cached images keep pulling with real clients: a moved tag stale, an unchanged one revalidated by HEAD.
            let out = try TempDirectory.make("skopeo-budget")
            defer { try? FileManager.default.removeItem(atPath: out) }
            for (i, image) in [(0, images[0]), (1, images[1])] {
                let r = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app\(i):v1", destinationDirectory: "\(out)/\(i)", timeout: .seconds(60))
                #expect(r.status == 0, "\(r.output)")
                #expect(try SkopeoDir.verify(directory: "\(out)/\(i)", expected: image.blobs) == [])
            }
            #expect(Self.manifestGETs(proxy) == 5)

            // /stats and /metrics show the budget per upstream.
            let stats = try await ObservabilityTests.get("/stats", wharf.port)
            let json = try JSONSerialization.jsonObject(with: Data(stats.body)) as? [String: Any] ?? [:]
            let upstream = (json["upstreams"] as? [[String: Any]])?.first ?? [:]
            let budget = (upstream["rateLimitBudgets"] as? [[String: Any]])?.first ?? [:]
            #expect(budget["identity"] as? String == "mirror" && budget["remaining"] as? Int == 0 && budget["limit"] as? Int == 20)
            #expect(budget["state"] as? String == "exhausted" && upstream["budgetRefusals"] as? Int == 1)
            let metrics = try await ObservabilityTests.get("/metrics", wharf.port).bodyText
            #expect(ObservabilityTests.metric(#"wharf_upstream_ratelimit_remaining{upstream="test-upstream"}"#, in: metrics) == 0)
            #expect(ObservabilityTests.metric(#"wharf_upstream_ratelimit_limit{upstream="test-upstream"}"#, in: metrics) == 20)
            #expect(ObservabilityTests.metric(#"wharf_ratelimit_budget_refusals_total{upstream="test-upstream"}"#, in: metrics) == 1)
            // The moved tag was served stale twice: to the raw GET and to skopeo.
            #expect(ObservabilityTests.metric("wharf_ratelimit_budget_stale_serves_total", in: metrics) == 2)
        }
    }

    @Test("`warm` pauses while the budget is in its reserve (one free HEAD per image, no GET) and resumes once the upstream reports more")
    func warmPauses() async throws {
        let upstream = try UpstreamEnvironment()
        let a = try upstream.generator.image(layerSizes: [40_000], format: .oci)
        let b = try upstream.generator.image(layerSizes: [50_000], format: .oci)
        try upstream.storage.add(image: a, repository: "team/a", tag: "v1")
        try upstream.storage.add(image: b, repository: "team/b", tag: "v1")
        try await upstream.start()
        let proxy = TamperingProxy(upstream: upstream.registry.url)
        try await proxy.start()
        proxy.setRateLimit(limit: 20, remaining: 3)  // the reserve is 2: one pull left above it
        let work = try TempDirectory.make("warm-budget")
        var wharf: WharfProcess?
        do {
            try """
                upstreams:
                  - name: hub
                    url: \(proxy.url)
                warm:
                  every: 1s
                  images: [team/a:v1, team/b:v1]
                """.write(toFile: work + "/wharf.yaml", atomically: true, encoding: .utf8)
            let started = try await WharfProcess.start(upstream: proxy.url, dataDirectory: work + "/data", extraArguments: ["--config", work + "/wharf.yaml"])
            wharf = started
            func cached(_ image: GeneratedImage) -> Bool {
                Set(image.blobs.map(\.hex)).isSubset(of: CacheFiles.blobs(in: started.dataDirectory).keys)
            }
            // team/a spends the last pull above the reserve; team/b is paused, run after run.
            await eventually(within: .seconds(10), "team/a was not warmed") { cached(a) }
            let paused = "warm: team/b:v1: paused: the upstream's pull budget is down to its reserve"
            await eventually(within: .seconds(10), "no run logged the pause") { started.child.output().components(separatedBy: paused).count > 2 }
            #expect(proxy.count(method: "GET", pathContaining: "/team/b/manifests/") == 0, "a paused warm spent the reserve")
            #expect(proxy.count(method: "HEAD", pathContaining: "/team/b/manifests/") >= 2, "each paused run refreshes the budget with a free HEAD")
            #expect(proxy.rateLimitRemaining == 2 && !cached(b))

            // The window moved on upstream: the next run's HEAD sees it and team/b is warmed.
            proxy.setRateLimit(limit: 20, remaining: 20)
            await eventually(within: .seconds(10), "team/b was not warmed once the budget came back") { cached(b) }
            #expect(proxy.count(method: "GET", pathContaining: "/team/b/manifests/") == 1)
            #expect(await started.stop() == 0)
            wharf = nil
        } catch {
            Issue.record(error)
        }
        if let wharf { await wharf.stop() }
        try? await proxy.stop()
        await upstream.stop()
        try? FileManager.default.removeItem(atPath: work)
    }
}
