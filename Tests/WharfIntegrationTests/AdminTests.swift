import Foundation
import Logging
import Testing
import WharfAuth
import WharfHTTP
import WharfMirror
import WharfTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The admin API: who may use it, purge (never a blob another image, a pin or a client still uses),
/// pins at run time, warm now.
@Suite(.serialized, .timeLimit(.minutes(3)), .tags(.integration))
struct AdminTests {
    static let token = "admin-token-0123456789"
    static let logger = Logger(label: "admin-test")

    static func call(_ method: String, _ path: String, _ port: Int, auth: String? = "Bearer \(token)") async throws -> RawHTTP.Response {
        let authorization = auth.map { "Authorization: \($0)\r\n" } ?? ""
        return try await RawHTTP.request("\(method) \(path) HTTP/1.1\r\nHost: w\r\n\(authorization)Content-Length: 0\r\nConnection: close\r\n\r\n", port: port)
    }

    static func json(_ r: RawHTTP.Response) -> [String: Any] { (try? JSONSerialization.jsonObject(with: Data(r.body))) as? [String: Any] ?? [:] }

    @Test("only administrators, only over TLS unless allowed; purge keeps shared, pinned and in-use blobs; pins survive in pins.json")
    func adminAPI() async throws {
        let upstream = try UpstreamEnvironment()
        let v1 = try upstream.generator.image(layerSizes: [300_000, 4 << 20], format: .oci)
        try upstream.storage.add(image: v1, repository: "team/app", tag: "v1")
        // v2 shares v1's first layer: its manifest lists that layer and one of its own.
        let v2 = try upstream.generator.image(layerSizes: [90_000], format: .oci)
        let shared = v1.layers[0]
        func descriptor(_ b: GeneratedBlob) -> [String: Any] { ["mediaType": b.mediaType, "digest": b.digest, "size": b.size] }
        let v2Manifest = try upstream.generator.document(
            JSONSerialization.data(withJSONObject: [
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": descriptor(v2.config),
                "layers": [descriptor(shared), descriptor(v2.layers[0])],
            ] as [String: Any], options: [.sortedKeys]), mediaType: "application/vnd.oci.image.manifest.v1+json")
        for blob in [v2.config, v2.layers[0], shared] { try upstream.storage.addBlob(blob, repository: "team/app") }
        try upstream.storage.addManifest(v2Manifest, repository: "team/app")
        try upstream.storage.setTag("v2", repository: "team/app", manifestDigest: v2Manifest.digest)
        let other = try upstream.generator.image(layerSizes: [50_000], format: .oci)
        try upstream.storage.add(image: other, repository: "team/other", tag: "v1")
        try await upstream.start()
        let admin = AdminAuthenticator(htpasswd: nil, token: Self.token, allowWithoutTLS: true, logger: Self.logger)
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url, configureServer: { $0.admin = admin })
        let strict = try await WharfInstance.start(upstream: upstream.registry.url, configureServer: {
            $0.admin = AdminAuthenticator(htpasswd: nil, token: Self.token, allowWithoutTLS: false, logger: Self.logger)
        })
        do {
            // Who may: nobody without credentials or with a wrong token; nobody over plain HTTP unless allowed.
            let anonymous = try await Self.call("GET", "/admin/cache", wharf.port, auth: nil)
            #expect(anonymous.status == 401 && anonymous.header("www-authenticate") == "Basic realm=\"wharf-admin\"")
            #expect(try await Self.call("GET", "/admin/cache", wharf.port, auth: "Bearer wrong-token-0123456789").status == 401)
            #expect(try await Self.call("POST", "/admin/purge?repository=team/app", wharf.port, auth: "Bearer wrong").status == 401)
            #expect(try await Self.call("GET", "/admin/cache", strict.port).status == 403)
            #expect(try await Self.call("GET", "/admin/nothing", wharf.port).status == 404)
            #expect(try await Self.call("GET", "/admin/purge", wharf.port).status == 405)

            try await wharf.cache(v1.layers + [v1.config], of: "team/app")
            _ = try await RawHTTP.request("GET /v2/team/app/manifests/v2 HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            for layer in v2.layers { _ = try await RawHTTP.request("GET /v2/team/app/blobs/\(layer.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port) }
            try await wharf.cache(other.layers + [other.config], of: "team/other")
            await eventually("v2's layer was not indexed") { wharf.cachedBlobHexes().contains(v2.layers[0].hex) }

            let listing = Self.json(try await Self.call("GET", "/admin/cache", wharf.port))
            let repos = (listing["repositories"] as? [[String: Any]] ?? []).map { "\($0["repository"] ?? "")" }
            #expect(repos == ["team/app", "team/other"])

            // A client is in the middle of v1's big layer: it must not lose the file under it.
            let big = v1.layers[1]
            let fd = try RawHTTP.connect(port: wharf.port, receiveBuffer: 4096)
            defer { close(fd) }
            let request = Array("GET /v2/team/app/blobs/\(big.digest) HTTP/1.1\r\nHost: w\r\n\r\n".utf8)
            _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            var first = [UInt8](repeating: 0, count: 1024)
            let got = first.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            #expect(got > 0)

            let purged = try await Self.call("POST", "/admin/purge?repository=team/app&reference=v1", wharf.port)
            let report = Self.json(purged)
            #expect(purged.status == 200, "\(purged.bodyText)")
            #expect(report["tags"] as? Int == 1 && report["manifests"] as? Int == 1)
            #expect(report["keptShared"] as? Int == 1, "the layer v2 shares was not kept: \(report)")
            #expect(report["keptInUse"] as? Int == 1, "the layer being downloaded was not kept: \(report)")
            #expect(report["blobs"] as? Int == 1, "only v1's config should go: \(report)")
            let files = wharf.cachedBlobHexes()
            #expect(files.contains(shared.hex) && files.contains(big.hex) && !files.contains(v1.config.hex))
            // The slow client still gets every byte.
            var received = Array(first.prefix(max(0, got)))
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                received.append(contentsOf: chunk[0..<n])
                if let r = RawHTTP.parse(received), let length = r.declaredLength, r.body.count >= length { break }
            }
            let whole = try #require(RawHTTP.parse(received))
            #expect(whole.status == 200 && FileDigest.sha256(whole.body) == big.digest)
            // v2 still answers from the cache.
            let cached = try await RawHTTP.request("GET /v2/team/app/blobs/\(shared.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(cached.status == 200 && cached.body.count == Int(shared.size))

            // Pins at run time: a pinned image cannot be purged; the pin is kept in pins.json.
            let pin = try await Self.call("POST", "/admin/pins?image=team/other:v1", wharf.port)
            #expect(pin.status == 201, "\(pin.bodyText)")
            #expect(FileManager.default.fileExists(atPath: wharf.dataDirectory + "/pins.json"))
            #expect(try await Self.call("POST", "/admin/purge?repository=team/other", wharf.port).status == 409)
            #expect((Self.json(try await Self.call("GET", "/admin/pins", wharf.port))["pins"] as? [Any])?.count == 1)
            #expect(try await Self.call("POST", "/admin/pins?upstream=nope&image=team/other:v1", wharf.port).status == 400)
            #expect(try await Self.call("DELETE", "/admin/pins?image=team/other:v1", wharf.port).status == 200)
            let whole2 = Self.json(try await Self.call("POST", "/admin/purge?repository=team/other", wharf.port))
            #expect(whole2["tags"] as? Int == 1 && whole2["blobs"] as? Int == 2, "\(whole2)")
            #expect(try await Self.call("POST", "/admin/purge?repository=team/other", wharf.port).status == 404)
            // A purged image pulls again from the upstream.
            let again = try await RawHTTP.request("GET /v2/team/other/blobs/\(other.layers[0].digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(again.status == 200 && FileDigest.sha256(again.body) == other.layers[0].digest)
            // No warm list configured here.
            #expect(try await Self.call("POST", "/admin/warm", wharf.port).status == 409)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await strict.stop()
        await upstream.stop()
    }

    @Test("`wharf cache ls|pin|purge|unpin|warm` drive a running Wharf's admin API; wrong or missing credentials are refused with a hint")
    func cacheCommands() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [60_000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try await upstream.start()
        let work = try TempDirectory.make("admin-cli")
        var wharf: WharfProcess?
        do {
            try (Self.token + "\n").write(toFile: work + "/token", atomically: true, encoding: .utf8)
            try "wrong-token-but-long-enough\n".write(toFile: work + "/wrong", atomically: true, encoding: .utf8)
            try """
                upstreams:
                  - name: hub
                    url: \(upstream.registry.url)
                admin:
                  token-file: \(work)/token
                  allow-without-tls: true
                """.write(toFile: work + "/wharf.yaml", atomically: true, encoding: .utf8)
            let started = try await WharfProcess.start(upstream: upstream.registry.url, dataDirectory: work + "/data", extraArguments: ["--config", work + "/wharf.yaml"])
            wharf = started
            #expect(try await RawHTTP.request("GET /v2/team/app/manifests/v1 HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: started.port).status == 200)
            for layer in image.blobs {
                _ = try await RawHTTP.request("GET /v2/team/app/blobs/\(layer.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: started.port)
            }
            let auth = ["--url", started.url, "--token-file", work + "/token"]
            let ls = try await WharfProcess.run(["cache", "ls"] + auth)
            #expect(ls.status == 0 && ls.output.contains("hub/team/app") && ls.output.contains("v1"), "\(ls.output)")
            let wrong = try await WharfProcess.run(["cache", "ls", "--url", started.url, "--token-file", work + "/wrong"])
            #expect(wrong.status != 0 && wrong.output.contains("check --token-file"), "\(wrong.output)")
            let none = try await WharfProcess.run(["cache", "ls", "--url", started.url])
            #expect(none.status != 0 && none.output.contains("--token-file"), "\(none.output)")
            #expect(try await WharfProcess.run(["cache", "pin", "team/app:v1"] + auth).output.contains("pinned team/app:v1"))
            let refused = try await WharfProcess.run(["cache", "purge", "team/app:v1"] + auth)
            #expect(refused.status != 0 && refused.output.contains("unpin it first"), "\(refused.output)")
            #expect(try await WharfProcess.run(["cache", "unpin", "team/app:v1"] + auth).status == 0)
            let purged = try await WharfProcess.run(["cache", "purge", "team/app:v1"] + auth)
            #expect(purged.status == 0 && purged.output.contains("1 tag(s), 1 manifest(s), 2 blob(s)"), "\(purged.output)")
            #expect(CacheFiles.blobs(in: started.dataDirectory).isEmpty, "the purged image's blobs are still on disk")
            let warm = try await WharfProcess.run(["cache", "warm"] + auth)
            #expect(warm.status != 0 && warm.output.contains("no warm list"), "\(warm.output)")
            #expect(await started.stop() == 0)
            wharf = nil
        } catch {
            Issue.record(error)
        }
        if let wharf { await wharf.stop() }
        await upstream.stop()
        try? FileManager.default.removeItem(atPath: work)
    }
}
