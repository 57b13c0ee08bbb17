import Foundation
import Testing
import WharfAuth
import WharfMirror
import WharfTestSupport
import WharfUpstream

/// Docker Trusted Registry's content-cache model: an edge Wharf authorizes pulls and answers blob
/// GETs with a signed, short-lived 307 to a cache Wharf near the client, which checks the signature.
@Suite(.serialized, .timeLimit(.minutes(10)), .tags(.integration, .realClients, .needsRoot))
struct EdgeCacheTests {
    static let secret = Array("edge-and-cache-share-this-secret".utf8)

    static func hub(_ url: String) throws -> [MirrorUpstream] {
        [MirrorUpstream(configuration: try UpstreamConfiguration(name: "hub", url: url), namespaces: ["docker.io"], isDefault: true)]
    }

    @Test("skopeo, containerd and dockerd pull through an edge that redirects blobs to a signed-URL cache; the edge keeps no blobs")
    func clientsFollowRedirects() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [500_000, 70_000], format: .dockerSchema2)
        try upstream.storage.add(image: image, repository: "library/alpine", tag: "3.20")
        try await upstream.start()
        let signer = BlobURLSigner(secret: Self.secret)
        let cache = try await WharfInstance.start(
            upstreams: try Self.hub(upstream.registry.url), edge: EdgeSettings(redirectBlobsTo: nil, requireSignedBlobs: true, signer: signer))
        let edge = try await WharfInstance.start(
            upstreams: try Self.hub(upstream.registry.url), edge: EdgeSettings(redirectBlobsTo: cache.url, requireSignedBlobs: false, signer: signer))
        let work = try TempDirectory.make("edge")
        let containerd = try ContainerdDaemon()
        let docker = try DockerDaemon(registryMirrors: [edge.url])
        do {
            let pulled = try await Skopeo.copy(source: "docker://\(edge.host)/library/alpine:3.20", destinationDirectory: work + "/a")
            #expect(pulled.status == 0, "\(pulled.output)")
            #expect(try SkopeoDir.verify(directory: work + "/a", expected: image.blobs) == [])

            try await containerd.start()
            try containerd.configureMirror(registries: ["docker.io"], mirror: edge.url)
            let ctr = try await containerd.pull("docker.io/library/alpine:3.20")
            #expect(ctr.status == 0, "\(ctr.output)")
            #expect(try await containerd.imageDigest("docker.io/library/alpine:3.20") == image.manifest.digest)

            try await docker.start()
            let d = try await docker.pull("alpine:3.20")
            #expect(d.status == 0, "\(d.output)")
            #expect(try await docker.imageID("alpine:3.20") == image.config.digest)

            for blob in image.blobs { #expect(cache.cachedBlobHexes().contains(String(blob.digest.dropFirst(7)))) }
            #expect(edge.cachedBlobHexes().isEmpty, "the edge must not store blobs")
            #expect(edge.mirror.stats.bytesFromDisk.value == 0 && edge.mirror.stats.bytesFromFills.value == 0)
        } catch {
            Issue.record(error)
        }
        await docker.stop()
        await containerd.stop()
        await edge.stop()
        await cache.stop()
        await upstream.stop()
        try? FileManager.default.removeItem(atPath: work)
    }

    @Test("the cache refuses missing (401), tampered, re-targeted and expired (403) signatures")
    func signaturesAreChecked() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [50_000, 40_000], format: .oci)
        try upstream.storage.add(image: image, repository: "library/alpine", tag: "3.20")
        try await upstream.start()
        let signer = BlobURLSigner(secret: Self.secret)
        let cache = try await WharfInstance.start(
            upstreams: try Self.hub(upstream.registry.url), edge: EdgeSettings(redirectBlobsTo: nil, requireSignedBlobs: true, signer: signer))
        let edge = try await WharfInstance.start(
            upstreams: try Self.hub(upstream.registry.url),
            edge: EdgeSettings(redirectBlobsTo: cache.url, requireSignedBlobs: false, signer: signer, lifetime: .seconds(30)))
        do {
            let layer = image.layers[0].digest, other = image.layers[1].digest
            _ = try await RawHTTP.request("GET /v2/library/alpine/manifests/3.20 HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n", port: edge.port)
            let redirect = try await RawHTTP.request("GET /v2/library/alpine/blobs/\(layer) HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n", port: edge.port)
            #expect(redirect.status == 307)
            let location = try #require(redirect.header("location"))
            #expect(location.hasPrefix("\(cache.url)/v2/library/alpine/blobs/\(layer)?wharf-expires="))
            let target = String(location.dropFirst(cache.url.count))
            let get = { (path: String, method: String) in
                try await RawHTTP.request("\(method) \(path) HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n", port: cache.port)
            }
            let good = try await get(target, "GET")
            #expect(good.status == 200 && good.body.count == image.layers[0].size)
            #expect(try await get(target, "HEAD").status == 200)
            // Again, now a cache hit (answered on the event loop): the signature is still required.
            #expect(try await get(target, "GET").status == 200)
            let unsigned = try await get("/v2/library/alpine/blobs/\(layer)", "GET")
            #expect(unsigned.status == 401 && unsigned.bodyText.contains("UNAUTHORIZED"))
            var tampered = target
            let last = tampered.removeLast()
            tampered.append(last == "0" ? "1" : "0")
            #expect(try await get(tampered, "GET").status == 403)
            // A valid signature for one digest does not open another.
            let retargeted = target.replacingOccurrences(of: layer, with: other)
            #expect(try await get(retargeted, "GET").status == 403)
            // Expired: signed correctly, but in the past.
            let path = "/v2/library/alpine/blobs/\(layer)"
            let past = UInt64(Date().timeIntervalSince1970) - 5
            let expired = try await get(path + "?" + signer.query(method: "GET", path: path, digest: layer, expires: past), "GET")
            #expect(expired.status == 403 && expired.bodyText.contains("expired"), "\(expired.bodyText)")
            // A different secret's signature fails too.
            let stranger = BlobURLSigner(secret: Array("some-other-secret-of-enough-bytes".utf8))
            let future = UInt64(Date().timeIntervalSince1970) + 60
            #expect(try await get(path + "?" + stranger.query(method: "GET", path: path, digest: layer, expires: future), "GET").status == 403)
            #expect(try await get(path + "?" + signer.query(method: "GET", path: path, digest: layer, expires: future), "GET").status == 200)
        } catch {
            Issue.record(error)
        }
        await edge.stop()
        await cache.stop()
        await upstream.stop()
    }

    @Test("`edge:` in the config files of `wharf serve`: the edge answers a signed 307 the cache honours; --edge-ttl beats the file")
    func edgeAndCacheFromConfigFiles() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [80_000], format: .oci)
        try upstream.storage.add(image: image, repository: "library/alpine", tag: "3.20")
        try await upstream.start()
        let work = try TempDirectory.make("edge-config")
        var cache: WharfProcess?, edge: WharfProcess?
        do {
            let secretFile = work + "/edge.secret"
            try (String(decoding: Self.secret, as: UTF8.self) + "\n").write(toFile: secretFile, atomically: true, encoding: .utf8)
            try "edge:\n  require-signed-blobs: true\n  secret-file: \(secretFile)\n".write(toFile: work + "/cache.yaml", atomically: true, encoding: .utf8)
            let c = try await WharfProcess.start(
                upstream: upstream.registry.url, dataDirectory: work + "/cache", extraArguments: ["--config", work + "/cache.yaml"])
            cache = c
            let edgeYAML = "edge:\n  redirect-blobs-to: \(c.url)\n  secret-file: \(secretFile)\n  ttl: 10m\n"
            try edgeYAML.write(toFile: work + "/edge.yaml", atomically: true, encoding: .utf8)
            let check = try await WharfProcess.run(["config", "check", work + "/edge.yaml"])
            #expect(check.status == 0 && check.output.contains("edge: edge → \(c.url), signed URLs valid 10m"), "\(check.output)")
            let e = try await WharfProcess.start(
                upstream: upstream.registry.url, dataDirectory: work + "/edge", extraArguments: ["--config", work + "/edge.yaml", "--edge-ttl", "30"])
            edge = e

            let layer = image.layers[0]
            let request = { (path: String, port: Int) in
                try await RawHTTP.request("GET \(path) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: port)
            }
            #expect(try await request("/v2/library/alpine/manifests/3.20", e.port).status == 200)
            let redirect = try await request("/v2/library/alpine/blobs/\(layer.digest)", e.port)
            #expect(redirect.status == 307)
            let location = try #require(redirect.header("location"))
            let prefix = "\(c.url)/v2/library/alpine/blobs/\(layer.digest)?\(BlobURLSigner.expiresParameter)="
            #expect(location.hasPrefix(prefix), "\(location)")
            let expires = try #require(UInt64(location.dropFirst(prefix.count).prefix { $0.isNumber }))
            let now = UInt64(Date().timeIntervalSince1970)
            #expect((now + 20...now + 31).contains(expires), "valid for --edge-ttl 30 s, not the file's 10 min: \(expires - now) s")
            let target = String(location.dropFirst(c.url.count))
            let served = try await request(target, c.port)
            #expect(served.status == 200 && served.body.count == layer.size)
            #expect(served.header("docker-content-digest") == layer.digest)
            #expect(try await request("/v2/library/alpine/blobs/\(layer.digest)", c.port).status == 401, "the cache wants a signature")
            await eventually("the cache did not store the layer") { CacheFiles.blobs(in: work + "/cache")[layer.hex] != nil }
            #expect(CacheFiles.blobs(in: work + "/cache")[layer.hex] == Int64(layer.size))
            #expect(CacheFiles.blobs(in: work + "/edge").isEmpty, "the edge keeps no blobs")
        } catch {
            Issue.record(error)
        }
        if let edge { await edge.stop() }
        if let cache { await cache.stop() }
        await upstream.stop()
        try? FileManager.default.removeItem(atPath: work)
    }
}
