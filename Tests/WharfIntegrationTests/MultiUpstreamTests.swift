import Foundation
import Testing
import WharfMirror
import WharfTestSupport
import WharfUpstream

/// One Wharf in front of two real registries: routed by containerd's `ns` and by path prefix
/// (podman/skopeo `registries.conf` mirrors with a namespace in the location).
@Suite(.serialized, .timeLimit(.minutes(10)), .tags(.integration, .realClients))
struct MultiUpstreamTests {
    struct TwoRegistries {
        let hub: UpstreamEnvironment
        let quay: UpstreamEnvironment
        let alpine: GeneratedImage
        let tool: GeneratedImage

        static func start() async throws -> TwoRegistries {
            let hub = try UpstreamEnvironment(), quay = try UpstreamEnvironment()
            let alpine = try hub.generator.image(layerSizes: [200_000], format: .dockerSchema2)
            let tool = try quay.generator.image(layerSizes: [150_000, 30_000], format: .oci)
            try hub.storage.add(image: alpine, repository: "library/alpine", tag: "3.20")
            try quay.storage.add(image: tool, repository: "org/tool", tag: "1")
            try quay.storage.add(image: tool, repository: "org/tool", tag: "2")
            try await hub.start()
            try await quay.start()
            return TwoRegistries(hub: hub, quay: quay, alpine: alpine, tool: tool)
        }

        /// `hub` stands in for Docker Hub (ns docker.io, prefix dockerhub, default); `quay` for quay.io (prefix quay).
        func upstreams() throws -> [MirrorUpstream] {
            [
                MirrorUpstream(
                    configuration: try UpstreamConfiguration(name: "hub", url: self.hub.registry.url),
                    namespaces: ["docker.io"], pathPrefix: "dockerhub", isDefault: true),
                MirrorUpstream(
                    configuration: try UpstreamConfiguration(name: "quay", url: self.quay.registry.url),
                    namespaces: ["quay.io"], pathPrefix: "quay", policy: RepositoryPolicy(deny: ["org/secret*"])),
            ]
        }

        func stop() async {
            await self.hub.stop()
            await self.quay.stop()
        }
    }

    static func get(_ path: String, _ port: Int) async throws -> RawHTTP.Response {
        try await RawHTTP.request("GET \(path) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: port)
    }

    @Test("ns selects the upstream, is echoed as OCI-Namespace, stripped upstream and kept in Link; unknown ns is NAME_UNKNOWN; deny is 403")
    func routesByNamespace() async throws {
        let r = try await TwoRegistries.start()
        let wharf = try await WharfInstance.start(upstreams: try r.upstreams())
        do {
            let a = try await Self.get("/v2/library/alpine/manifests/3.20?ns=docker.io", wharf.port)
            #expect(a.status == 200 && a.header("docker-content-digest") == r.alpine.manifest.digest)
            #expect(a.header("oci-namespace") == "docker.io")
            let b = try await Self.get("/v2/org/tool/manifests/1?ns=quay.io", wharf.port)
            #expect(b.status == 200 && b.header("docker-content-digest") == r.tool.manifest.digest)
            #expect(b.header("oci-namespace") == "quay.io")
            let blob = try await Self.get("/v2/org/tool/blobs/\(r.tool.layers[0].digest)?ns=quay.io", wharf.port)
            #expect(blob.status == 200 && blob.body.count == r.tool.layers[0].size)
            // Each registry saw only its own repository, and never the ns parameter.
            let hubLog = try r.hub.registry.accessLog(), quayLog = try r.quay.registry.accessLog()
            #expect(hubLog.contains { $0.path.contains("/v2/library/alpine/manifests/3.20") })
            #expect(!hubLog.contains { $0.path.contains("org/tool") })
            #expect(quayLog.contains { $0.path.contains("/v2/org/tool/blobs/") })
            #expect(!(hubLog + quayLog).contains { $0.path.contains("ns=") })

            let unknown = try await Self.get("/v2/library/alpine/manifests/3.20?ns=ghcr.io", wharf.port)
            #expect(unknown.status == 404 && unknown.bodyText.contains("NAME_UNKNOWN"))
            let denied = try await Self.get("/v2/org/secret-tool/manifests/1?ns=quay.io", wharf.port)
            #expect(denied.status == 403 && denied.bodyText.contains("DENIED") && denied.bodyText.contains("org/secret*"), "\(denied.bodyText)")
            let tags = try await Self.get("/v2/org/tool/tags/list?n=1&ns=quay.io", wharf.port)
            #expect(tags.status == 200 && tags.bodyText.contains("\"1\"") && !tags.bodyText.contains("\"2\""))
            #expect(tags.header("link") == "</v2/org/tool/tags/list?n=1&last=1&ns=quay.io>; rel=\"next\"", "\(tags.header("link") ?? "no Link")")
            // No ns and no prefix: the default upstream.
            let plain = try await Self.get("/v2/library/alpine/manifests/3.20", wharf.port)
            #expect(plain.status == 200 && plain.header("oci-namespace") == nil)
            // Docker ≥ 25 / containerd mirror paths put the prefix before /v2/.
            #expect(try await Self.get("/dockerhub/v2/", wharf.port).status == 200)
            let pathMirror = try await Self.get("/dockerhub/v2/library/alpine/manifests/3.20", wharf.port)
            #expect(pathMirror.status == 200 && pathMirror.header("docker-content-digest") == r.alpine.manifest.digest)
            let quayBlob = try await Self.get("/quay/v2/org/tool/blobs/\(r.tool.layers[1].digest)", wharf.port)
            #expect(quayBlob.status == 200 && quayBlob.body.count == r.tool.layers[1].size)
            let stats = try await Self.get("/stats", wharf.port)
            #expect(stats.bodyText.contains("\"hub\"") && stats.bodyText.contains("\"quay\""))
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await r.stop()
    }

    @Test("skopeo with a registries.conf mirror location carrying a namespace (host:port/dockerhub, host:port/quay)")
    func registriesConfMirrors() async throws {
        let r = try await TwoRegistries.start()
        let wharf = try await WharfInstance.start(upstreams: try r.upstreams())
        let work = try TempDirectory.make("regconf")
        do {
            let file = """
                unqualified-search-registries = []

                [[registry]]
                prefix = "docker.io"
                location = "registry-1.docker.io"
                [[registry.mirror]]
                location = "\(wharf.host)/dockerhub"
                insecure = true

                [[registry]]
                prefix = "quay.io"
                location = "quay.io"
                [[registry.mirror]]
                location = "\(wharf.host)/quay"
                insecure = true
                """
            try file.write(toFile: work + "/registries.conf", atomically: true, encoding: .utf8)
            // skopeo 1.9 ignores CONTAINERS_REGISTRIES_CONF; its hidden global --registries-conf works.
            let conf = ["--registries-conf", work + "/registries.conf"]
            // No internet here: success means the mirror served it.
            let hub = try await Skopeo.run(
                arguments: conf + ["--insecure-policy", "copy", "docker://docker.io/library/alpine:3.20", "dir:\(work)/alpine"], timeout: .seconds(120))
            #expect(hub.status == 0, "\(hub.output)")
            #expect(try SkopeoDir.verify(directory: work + "/alpine", expected: r.alpine.blobs) == [])
            let quay = try await Skopeo.run(
                arguments: conf + ["--insecure-policy", "copy", "docker://quay.io/org/tool:1", "dir:\(work)/tool"], timeout: .seconds(120))
            #expect(quay.status == 0, "\(quay.output)")
            #expect(try SkopeoDir.verify(directory: work + "/tool", expected: r.tool.blobs) == [])
            // The prefix was stripped before going upstream.
            #expect(try r.hub.registry.accessLog().contains { $0.path.hasPrefix("/v2/library/alpine/") })
            #expect(!(try r.hub.registry.accessLog().contains { $0.path.contains("dockerhub") }))
            #expect(try r.quay.registry.accessLog().contains { $0.path.hasPrefix("/v2/org/tool/") })
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await r.stop()
        try? FileManager.default.removeItem(atPath: work)
    }
}
