import Foundation
import Synchronization
import Testing
import WharfHTTP
import WharfMirror
import WharfTestSupport
import WharfUpstream

/// The dashboard and the cache browser in a real browser (Debian's chromium, headless) after real
/// pulls: charts drawn, numbers equal to `/stats`, the cache listed. Screenshots land in
/// `$WHARF_SCREENSHOTS` when it is set (for a reviewer), else in a folder removed afterwards.
@Suite(.serialized, .timeLimit(.minutes(3)), .tags(.integration, .realClients))
struct DashboardBrowserTests {
    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Runs headless chromium on `url`: the DOM after scripts ran, and a screenshot at `screenshot`.
    static func browse(_ url: String, screenshot: String, height: Int = 2000) async throws -> String {
        let browser = try #require(Self.chromium, "chromium is not installed (scripts/install-deps.sh --test installs it)")
        let profile = try TempDirectory.make("chromium-profile")
        defer { try? FileManager.default.removeItem(atPath: profile) }
        let common = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars", "--no-first-run",
            "--user-data-dir=\(profile)", "--window-size=1280,\(height)", "--virtual-time-budget=3000",
        ]
        let shot = try await CommandRunner.run(executable: browser, arguments: common + ["--screenshot=\(screenshot)", url], timeout: .seconds(60))
        #expect(shot.status == 0, "chromium --screenshot: \(shot.output.suffix(500))")
        let dom = try await CommandRunner.run(executable: browser, arguments: common + ["--dump-dom", url], timeout: .seconds(60))
        #expect(dom.status == 0, "chromium --dump-dom failed")
        return dom.output
    }

    /// The text inside the element carrying `data-stat="key"`.
    static func stat(_ key: String, in dom: String) -> String? {
        guard let start = dom.range(of: "data-stat=\"\(key)\">") else { return nil }
        let rest = dom[start.upperBound...]
        return rest.range(of: "<").map { String(rest[..<$0.lowerBound]) }
    }

    @Test("after real pulls: the dashboard shows charts and /stats' numbers, the cache browser lists tags, platforms and pins")
    func dashboardInChromium() async throws {
        let upstream = try UpstreamEnvironment()
        let app = try upstream.generator.image(layerSizes: [400_000, 120_000], format: .oci)
        let multi = try upstream.generator.index(
            platforms: [(os: "linux", architecture: "amd64"), (os: "linux", architecture: "arm64")], layerSizes: [200_000], format: .oci)
        try upstream.storage.add(image: app, repository: "team/app", tag: "v1")
        try upstream.storage.add(index: multi, repository: "team/multi", tag: "2.0")
        try await upstream.start()
        var config = try UpstreamConfiguration(name: "registry", url: upstream.registry.url)
        config.tagTTL = .seconds(300)
        let wharf = try await WharfInstance.start(
            upstreams: [MirrorUpstream(configuration: config, pins: ["team/app:v1"], isDefault: true)], maxSize: 64 << 20,
            historyInterval: .milliseconds(500)
        ) { server in
            server.about = ServerAbout(configuration: ["upstreams:", "  registry: \(upstream.registry.url)"])
        }
        let keep = ProcessInfo.processInfo.environment["WHARF_SCREENSHOTS"]
        let shots = try keep ?? TempDirectory.make("screenshots")
        do {
            // Real clients: skopeo pulls both images (all platforms of the index), then hits.
            for (image, ref) in [("team/app", "v1"), ("team/multi", "2.0")] {
                let out = try TempDirectory.make("skopeo-dash")
                defer { try? FileManager.default.removeItem(atPath: out) }
                let r = try await Skopeo.copy(source: "docker://\(wharf.host)/\(image):\(ref)", destinationDirectory: out, extraArguments: ["--all"])
                #expect(r.status == 0, "\(r.output)")
            }
            for layer in app.layers {
                for _ in 0..<5 { _ = try await RawHTTP.request("GET /v2/team/app/blobs/\(layer.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port) }
            }
            let samples = wharf.mirror.history.withLock { $0.samples.count }
            await eventually(within: .seconds(10), "the history did not sample") { wharf.mirror.history.withLock { $0.samples.count } >= samples + 3 }

            let dom = try await Self.browse(wharf.url + "/", screenshot: shots + "/dashboard.png")
            let statsBody = try await ObservabilityTests.get("/stats", wharf.port)
            let stats = try JSONSerialization.jsonObject(with: Data(statsBody.body)) as? [String: Any] ?? [:]
            let cache = stats["cache"] as? [String: Any] ?? [:]
            for key in ["blobHits", "blobMisses", "manifestHits", "manifestMisses", "staleServes"] {
                #expect(Self.stat("cache.\(key)", in: dom) == (cache[key] as? Int).map(String.init), "cache.\(key) differs from /stats")
            }
            let entries = stats["entries"] as? [String: Any] ?? [:]
            #expect(Self.stat("entries.blobs", in: dom) == (entries["blobs"] as? Int).map(String.init))
            #expect(Self.stat("version", in: dom) == stats["version"] as? String && stats["version"] != nil)
            // Seven charts, each an SVG; the traffic ones have a drawn line with measured points.
            #expect(dom.components(separatedBy: "<figure class=\"chart\"").count - 1 == 7)
            for name in ["Requests per second", "Hit ratio (requests)", "Served from disk", "Upstream latency (first byte)"] {
                let figure = dom.range(of: "data-series=\"\(name)\"").map { String(dom[$0.upperBound...].prefix(2000)) } ?? ""
                #expect(figure.contains("<path class=\"series\" d=\"M"), "\(name): no line drawn")
            }
            #expect(dom.contains("class=\"disk\"") && dom.contains("pinned"), "no disk bar")
            #expect(dom.contains("registry: \(upstream.registry.url)"), "the configuration is not shown")
            // One skopeo copy --all of a two-platform index is one pull (its children come by digest).
            let pulls = Dictionary(uniqueKeysWithValues: ((stats["topRepositoriesByPulls"] as? [[String: Any]]) ?? []).map { ($0["name"] as? String ?? "", $0["pulls"] as? Int ?? -1) })
            #expect(pulls == ["team/app": 1, "team/multi": 1])

            let list = try await Self.browse(wharf.url + "/ui/cache", screenshot: shots + "/cache.png", height: 900)
            #expect(list.contains("registry / team/app") && list.contains("registry / team/multi"))
            #expect(list.contains("linux/amd64, linux/arm64"), "the index's platforms are not listed")
            #expect(list.contains("class=\"pin\""), "the pinned image is not marked")
            let search = try await Self.browse(wharf.url + "/ui/cache?q=multi", screenshot: shots + "/cache-search.png", height: 600)
            #expect(search.contains("team/multi") && !search.contains("registry / team/app<"))
            let detail = try await Self.browse(
                wharf.url + "/ui/cache/image?upstream=registry&repository=team/app&reference=v1", screenshot: shots + "/image.png", height: 900)
            for layer in app.layers { #expect(detail.contains(layer.digest), "a layer is missing from the image page") }
            #expect(detail.contains(app.manifest.digest) && detail.contains("Pinned</th><td>yes"))
            print("dashboard screenshots: \(shots)")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
        if keep == nil { try? FileManager.default.removeItem(atPath: shots) }
    }
}
