import Foundation
import Testing
import WharfHTTP
import WharfMirror
import WharfTestSupport
import WharfUpstream

/// Real container engines pull through Wharf from Distribution 2.8 with token auth:
/// dockerd with `registry-mirrors`, and containerd with `hosts.toml` for two registries routed by `ns`.
@Suite(.serialized, .timeLimit(.minutes(10)), .tags(.integration, .realClients, .needsRoot))
struct RealClientTests {
    @Test("dockerd with registry-mirrors pulls official, user and multi-arch images through Wharf; digests match the upstream's")
    func dockerRegistryMirrors() async throws {
        let upstream = try UpstreamEnvironment()
        let alpine = try upstream.generator.image(layerSizes: [400_000, 60_000], format: .dockerSchema2)
        let app = try upstream.generator.image(layerSizes: [250_000], format: .oci)
        let multi = try upstream.generator.index(
            platforms: [(os: "linux", architecture: "amd64"), (os: "linux", architecture: "arm64")], layerSizes: [300_000], format: .oci)
        let broken = try upstream.generator.image(layerSizes: [80_000], format: .dockerSchema2)
        try upstream.storage.add(image: alpine, repository: "library/alpine", tag: "3.20")
        try upstream.storage.add(image: app, repository: "team/app", tag: "v1")
        try upstream.storage.add(index: multi, repository: "team/multi", tag: "latest")
        try upstream.storage.add(image: broken, repository: "team/broken", tag: "v1")
        // A layer the upstream has lost: Wharf must answer 404 BLOB_UNKNOWN so Docker falls back at once.
        let hex = String(broken.layers[0].digest.dropFirst(7))
        try FileManager.default.removeItem(atPath: upstream.directory + "/storage/docker/registry/v2/blobs/sha256/\(hex.prefix(2))/\(hex)")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstreams: [MirrorUpstream(
            configuration: try UpstreamConfiguration(name: "hub", url: upstream.registry.url), namespaces: ["docker.io"], isDefault: true)])
        let docker = try DockerDaemon(registryMirrors: [wharf.url])
        do {
            try await docker.start()
            let official = try await docker.pull("alpine:3.20")
            #expect(official.status == 0, "\(official.output)\n\(docker.log().suffix(3000))")
            #expect(try await docker.repoDigests("alpine:3.20") == ["alpine@\(alpine.manifest.digest)"])
            #expect(try await docker.imageID("alpine:3.20") == alpine.config.digest)

            let user = try await docker.pull("team/app:v1")
            #expect(user.status == 0, "\(user.output)")
            #expect(try await docker.repoDigests("team/app:v1") == ["team/app@\(app.manifest.digest)"])
            #expect(try await docker.imageID("team/app:v1") == app.config.digest)

            let arch = try await docker.pull("team/multi:latest")
            #expect(arch.status == 0, "\(arch.output)")
            let amd64 = try #require(multi.images.first { $0.platform.architecture == "amd64" })
            #expect(try await docker.repoDigests("team/multi:latest") == ["team/multi@\(multi.index.digest)"])
            #expect(try await docker.imageID("team/multi:latest") == amd64.config.digest)

            for blob in alpine.blobs + app.blobs + amd64.blobs { #expect(wharf.cachedBlobHexes().contains(String(blob.digest.dropFirst(7)))) }
            // The classic engine asked Wharf (HEAD by tag, then GET by digest) and Wharf asked the upstream.
            #expect(try upstream.registry.requestCount(method: "GET", pathContaining: "/v2/library/alpine/blobs/") == alpine.blobs.count)

            // A blob the upstream cannot supply: 404, so Docker gives up on the mirror at once
            // (5xx would cost about 75 s of retries before falling back).
            let started = ContinuousClock.now
            let failed = try await docker.pull("team/broken:v1")
            #expect(failed.status != 0)
            #expect(ContinuousClock.now - started < .seconds(30), "docker took \(ContinuousClock.now - started) to give up")
        } catch {
            Issue.record(error)
        }
        await docker.stop()
        await wharf.stop()
        await upstream.stop()
    }

    @Test("containerd pulls through hosts.toml from two registries served by one Wharf, routed by ns")
    func containerdHostsToml() async throws {
        let hub = try UpstreamEnvironment(), ghcr = try UpstreamEnvironment()
        let alpine = try hub.generator.image(layerSizes: [300_000], format: .dockerSchema2)
        let tool = try ghcr.generator.index(
            platforms: [(os: "linux", architecture: "amd64"), (os: "linux", architecture: "arm64")], layerSizes: [200_000, 20_000], format: .oci)
        try hub.storage.add(image: alpine, repository: "library/alpine", tag: "3.20")
        try ghcr.storage.add(index: tool, repository: "owner/tool", tag: "1")
        try await hub.start()
        try await ghcr.start()
        let wharf = try await WharfInstance.start(upstreams: [
            MirrorUpstream(configuration: try UpstreamConfiguration(name: "hub", url: hub.registry.url), namespaces: ["docker.io"], isDefault: true),
            MirrorUpstream(configuration: try UpstreamConfiguration(name: "ghcr", url: ghcr.registry.url), namespaces: ["ghcr.io"]),
        ])
        let containerd = try ContainerdDaemon()
        do {
            try await containerd.start()
            try containerd.configureMirror(registries: ["docker.io", "ghcr.io"], mirror: wharf.url)
            let a = try await containerd.pull("docker.io/library/alpine:3.20")
            #expect(a.status == 0, "\(a.output)")
            #expect(try await containerd.imageDigest("docker.io/library/alpine:3.20") == alpine.manifest.digest)
            let b = try await containerd.pull("ghcr.io/owner/tool:1", extraArguments: ["--platform", "linux/amd64"])
            #expect(b.status == 0, "\(b.output)")
            #expect(try await containerd.imageDigest("ghcr.io/owner/tool:1") == tool.index.digest)
            let amd64 = try #require(tool.images.first { $0.platform.architecture == "amd64" })
            for blob in alpine.blobs + amd64.blobs { #expect(wharf.cachedBlobHexes().contains(String(blob.digest.dropFirst(7)))) }
            // Each upstream got only its own repository, without ns.
            let hubLog = try hub.registry.accessLog(), ghcrLog = try ghcr.registry.accessLog()
            #expect(hubLog.contains { $0.path.hasPrefix("/v2/library/alpine/") } && !hubLog.contains { $0.path.contains("owner/tool") })
            #expect(ghcrLog.contains { $0.path.hasPrefix("/v2/owner/tool/") } && !ghcrLog.contains { $0.path.contains("alpine") })
            #expect(!(hubLog + ghcrLog).contains { $0.path.contains("ns=") })
        } catch {
            Issue.record(error)
        }
        await containerd.stop()
        await wharf.stop()
        await hub.stop()
        await ghcr.stop()
    }

    @Test("containerd pulls over HTTPS, trusting the test CA through hosts.toml")
    func containerdOverTLS() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [600_000, 50_000], format: .oci)
        try upstream.storage.add(image: image, repository: "library/busybox", tag: "1")
        try await upstream.start()
        let work = try TempDirectory.make("ctr-tls")
        let certs = try await TestCertificates.make(in: work)
        let wharf = try await WharfInstance.start(
            upstreams: [MirrorUpstream(
                configuration: try UpstreamConfiguration(name: "hub", url: upstream.registry.url), namespaces: ["docker.io"], isDefault: true)],
            tls: try TLSCertificate(certificatePath: certs.serverCertificate, keyPath: certs.serverKey))
        let containerd = try ContainerdDaemon()
        do {
            try await containerd.start()
            try containerd.configureMirror(registries: ["docker.io"], mirror: "https://127.0.0.1:\(wharf.port)", caCertificatePath: certs.caCertificate)
            let pulled = try await containerd.pull("docker.io/library/busybox:1", plainHTTP: false)
            #expect(pulled.status == 0, "\(pulled.output)")
            #expect(try await containerd.imageDigest("docker.io/library/busybox:1") == image.manifest.digest)
            // Pulled again after the content store is emptied: now every blob is a cache hit over TLS.
            _ = try await containerd.removeImage("docker.io/library/busybox:1")
            let hitsBefore = wharf.mirror.stats.blobHits.value
            let again = try await containerd.pull("docker.io/library/busybox:1", plainHTTP: false)
            #expect(again.status == 0, "\(again.output)")
            #expect(wharf.mirror.stats.blobHits.value >= hitsBefore + image.blobs.count)
        } catch {
            Issue.record(error)
        }
        await containerd.stop()
        await wharf.stop()
        await upstream.stop()
        try? FileManager.default.removeItem(atPath: work)
    }
}
