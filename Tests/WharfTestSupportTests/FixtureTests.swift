import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import WharfTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Proves the fixtures against the real thing: Distribution 2.8, skopeo, gzip and tar.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration, .realClients))
struct FixtureTests {
    // MARK: - Image generator

    @Test func layersAreValidGzippedTarsWithMatchingDigests() async throws {
        let work = try TemporaryDirectory()
        defer { work.remove() }
        let generator = try ImageGenerator(directory: work.path + "/gen", seed: 7)
        let (layer, diffID) = try generator.layer(
            payloadSize: 1_000_003, mediaType: ManifestFormat.oci.layerMediaType)

        #expect(try FileDigest.sha256(path: layer.path) == layer.digest)
        #expect(try fileSize(layer.path) == layer.size)

        let listing = try await shell("tar -tvzf '\(layer.path)'")
        #expect(listing.status == 0, "tar: \(listing.output)")
        #expect(listing.output.contains("1000003"))
        let unzipped = try await shell("gzip -dc '\(layer.path)' | sha256sum")
        #expect(unzipped.status == 0)
        #expect("sha256:" + (unzipped.output.split(separator: " ").first.map(String.init) ?? "") == diffID)
    }

    @Test func generationIsDeterministicPerSeedAndUniquePerCall() throws {
        let work = try TemporaryDirectory()
        defer { work.remove() }
        let a = try ImageGenerator(directory: work.path + "/a", seed: 1)
        let b = try ImageGenerator(directory: work.path + "/b", seed: 1)
        let c = try ImageGenerator(directory: work.path + "/c", seed: 2)
        let imageA = try a.image(layerSizes: [1000, 2000], format: .dockerSchema2)
        let imageB = try b.image(layerSizes: [1000, 2000], format: .dockerSchema2)
        let imageC = try c.image(layerSizes: [1000, 2000], format: .dockerSchema2)
        #expect(imageA.manifest.digest == imageB.manifest.digest)
        #expect(imageA.manifest.digest != imageC.manifest.digest)
        #expect(imageA.layers[0].digest != imageA.layers[1].digest)
        let again = try a.image(layerSizes: [1000, 2000], format: .dockerSchema2)
        #expect(again.manifest.digest != imageA.manifest.digest)
        for blob in imageA.blobs + [imageA.manifest] {
            #expect(try FileDigest.sha256(path: blob.path) == blob.digest)
        }
        let raw = try a.rawBlob(size: 12_345)
        #expect(raw.size == 12_345)
        #expect(try FileDigest.sha256(path: raw.path) == raw.digest)

        let manifest = try JSONSerialization.jsonObject(with: imageA.manifest.data()) as? [String: Any]
        #expect(manifest?["schemaVersion"] as? Int == 2)
        #expect(manifest?["mediaType"] as? String == "application/vnd.docker.distribution.manifest.v2+json")
        let index = try a.index(
            platforms: [(os: "linux", architecture: "amd64"), (os: "linux", architecture: "arm64")],
            layerSizes: [10], format: .oci)
        let indexJSON = try JSONSerialization.jsonObject(with: index.index.data()) as? [String: Any]
        #expect(indexJSON?["mediaType"] as? String == "application/vnd.oci.image.index.v1+json")
        #expect((indexJSON?["manifests"] as? [Any])?.count == 2)
    }

    // MARK: - Storage seeding

    @Test func storageLayoutMatchesDistribution() throws {
        let work = try TemporaryDirectory()
        defer { work.remove() }
        let generator = try ImageGenerator(directory: work.path + "/gen", seed: 3)
        let index = try generator.index(
            platforms: [(os: "linux", architecture: "amd64"), (os: "linux", architecture: "arm64")],
            layerSizes: [100], format: .dockerSchema2)
        let storage = RegistryStorage(root: work.path + "/root")
        try storage.add(index: index, repository: "a/b", tag: "t")
        let repo = storage.root + "/docker/registry/v2/repositories/a/b"
        func link(_ path: String) throws -> String { try String(contentsOfFile: repo + path, encoding: .utf8) }
        #expect(try link("/_manifests/tags/t/current/link") == index.index.digest)
        #expect(try link("/_manifests/tags/t/index/sha256/\(index.index.hex)/link") == index.index.digest)
        for image in index.images {
            #expect(try link("/_manifests/revisions/sha256/\(image.manifest.hex)/link") == image.manifest.digest)
            for blob in image.blobs {
                #expect(try link("/_layers/sha256/\(blob.hex)/link") == blob.digest)
                #expect(try FileDigest.sha256(path: storage.blobDataPath(digest: blob.digest)) == blob.digest)
            }
        }
        let layer = index.images[0].layers[0]
        try storage.overwriteBlobData(digest: layer.digest, with: Data("corrupt".utf8))
        #expect(try FileDigest.sha256(path: storage.blobDataPath(digest: layer.digest)) != layer.digest)
        #expect(try FileDigest.sha256(path: layer.path) == layer.digest)
    }

    // MARK: - Token server

    @Test func tokenServerGrantsByPolicy() async throws {
        let tokens = TokenServer(
            users: ["alice": "wonderland", "admin": "root"],
            privateRepositories: ["team/secret": ["alice"]])
        try await tokens.start()
        do {
            let anonymous = try await tokenResponse(
                tokens, scopes: ["repository:team/secret:pull repository:library/public:pull,push"])
            #expect(anonymous.status == 200)
            #expect(anonymous.json["expires_in"] as? Int == 300)
            #expect(anonymous.json["issued_at"] is String)
            #expect(anonymous.json["token"] as? String == anonymous.json["access_token"] as? String)
            let access = try claims(anonymous.json["token"] as? String ?? "")["access"] as? [[String: Any]] ?? []
            #expect(access.count == 2)
            #expect(access.first { $0["name"] as? String == "team/secret" }?["actions"] as? [String] == [])
            #expect(access.first { $0["name"] as? String == "library/public" }?["actions"] as? [String] == ["pull"])

            let alice = try await tokenResponse(
                tokens, scopes: ["repository:team/secret:pull", "repository:127.0.0.1:5000/x/y:pull,push"],
                credentials: ("alice", "wonderland"))
            let aliceAccess = try claims(alice.json["token"] as? String ?? "")["access"] as? [[String: Any]] ?? []
            #expect(aliceAccess.first { $0["name"] as? String == "team/secret" }?["actions"] as? [String] == ["pull"])
            #expect(aliceAccess.first { $0["name"] as? String == "127.0.0.1:5000/x/y" }?["actions"] as? [String] == ["pull"])

            let admin = try await tokenResponse(
                tokens, scopes: ["repository:team/secret:pull,push"], credentials: ("admin", "root"))
            let adminClaims = try claims(admin.json["token"] as? String ?? "")
            #expect((adminClaims["access"] as? [[String: Any]])?.first?["actions"] as? [String] == ["pull", "push"])
            #expect(adminClaims["sub"] as? String == "admin")
            #expect(adminClaims["aud"] as? String == tokens.service)
            #expect(adminClaims["iss"] as? String == tokens.issuer)

            let wrong = try await tokenResponse(
                tokens, scopes: ["repository:team/secret:pull"], credentials: ("alice", "nope"))
            #expect(wrong.status == 401)

            #expect(tokens.requestCount == 4)
            #expect(tokens.requests.map(\.user) == [nil, "alice", "admin", "alice"])
            #expect(tokens.requests[0].scopes == ["repository:team/secret:pull", "repository:library/public:pull,push"])
            #expect(tokens.requests[3].status == 401)
        } catch {
            try await tokens.stop()
            throw error
        }
        try await tokens.stop()
    }

    // MARK: - Real registry, skopeo and the tampering proxy

    @Test func registrySkopeoAndProxyEndToEnd() async throws {
        let work = try TemporaryDirectory()
        defer { work.remove() }
        let generator = try ImageGenerator(directory: work.path + "/gen", seed: 2024)
        let image = try generator.image(layerSizes: [3 << 20, 100_000], format: .dockerSchema2)
        let index = try generator.index(
            platforms: [(os: "linux", architecture: "amd64"), (os: "linux", architecture: "arm64")],
            layerSizes: [50_000, 60_000], format: .oci)
        let secret = try generator.image(layerSizes: [20_000], format: .oci)

        let storage = RegistryStorage(root: work.path + "/storage")
        try storage.add(image: image, repository: "library/public", tag: "v1")
        try storage.add(index: index, repository: "multi/arch", tag: "latest")
        try storage.add(image: secret, repository: "team/secret", tag: "v1")

        let tokens = TokenServer(
            users: ["alice": "wonderland", "admin": "root"],
            privateRepositories: ["team/secret": ["alice"]])
        let registry = RegistryProcess(storageRoot: storage.root, tokenServer: tokens)
        var proxy: TamperingProxy?  // created once the registry's port is known

        func cleanUp() async {
            try? await proxy?.stop()
            try? await registry.stop()
            try? await tokens.stop()
        }

        do {
            try await tokens.start()
            try await registry.start()
            let registryPID = try #require(registry.pid)
            let host = "127.0.0.1:\(registry.port)"

            // Public image, anonymously.
            let publicDir = work.path + "/public"
            let pulled = try await Skopeo.copy(
                source: "docker://\(host)/library/public:v1", destinationDirectory: publicDir,
                extraArguments: [], timeout: .seconds(120))
            #expect(pulled.status == 0, "skopeo: \(pulled.output)")
            for blob in image.blobs {
                #expect(try FileDigest.sha256(path: publicDir + "/" + blob.hex) == blob.digest)
            }
            #expect(try FileDigest.sha256(path: publicDir + "/manifest.json") == image.manifest.digest)

            // Index: skopeo picks the linux/amd64 child.
            let multiDir = work.path + "/multi"
            let multi = try await Skopeo.copy(
                source: "docker://\(host)/multi/arch:latest", destinationDirectory: multiDir,
                extraArguments: [], timeout: .seconds(120))
            #expect(multi.status == 0, "skopeo: \(multi.output)")
            let amd64 = try #require(index.images.first { $0.platform.architecture == "amd64" })
            #expect(try FileDigest.sha256(path: multiDir + "/manifest.json") == amd64.manifest.digest)
            for blob in amd64.blobs {
                #expect(try FileDigest.sha256(path: multiDir + "/" + blob.hex) == blob.digest)
            }

            // Private repository: refused anonymously and with a wrong password, allowed to alice.
            let anonymous = try await Skopeo.copy(
                source: "docker://\(host)/team/secret:v1", destinationDirectory: work.path + "/anon",
                extraArguments: [], timeout: .seconds(120))
            #expect(anonymous.status != 0)
            let wrong = try await Skopeo.copy(
                source: "docker://\(host)/team/secret:v1", destinationDirectory: work.path + "/wrong",
                extraArguments: ["--src-creds", "alice:nope"], timeout: .seconds(120))
            #expect(wrong.status != 0)
            let secretDir = work.path + "/secret"
            let allowed = try await Skopeo.copy(
                source: "docker://\(host)/team/secret:v1", destinationDirectory: secretDir,
                extraArguments: ["--src-creds", "alice:wonderland"], timeout: .seconds(120))
            #expect(allowed.status == 0, "skopeo: \(allowed.output)")
            for blob in secret.blobs {
                #expect(try FileDigest.sha256(path: secretDir + "/" + blob.hex) == blob.digest)
            }
            #expect(tokens.requests.contains { $0.user == "alice" && $0.status == 200 })
            #expect(tokens.requests.contains { $0.user == "alice" && $0.status == 401 })

            // The access log is parsed.
            try await Task.sleep(for: .milliseconds(200))
            #expect(try registry.requestCount(method: "GET", pathContaining: "/v2/library/public/blobs/") >= 3)
            #expect(try registry.requestCount(method: "GET", pathContaining: "/v2/library/public/manifests/v1") >= 1)

            // Distribution 2.8 allows 60 s of leeway on exp.
            let layer = image.layers[0]
            let blobURL = registry.url + "/v2/library/public/blobs/" + layer.digest
            tokens.setExpiryClaimOffset(-300 - 30)  // expired 30 s ago: inside the leeway
            let lenient = try tokens.issueToken(user: nil, scopes: ["repository:library/public:pull"])
            #expect(try await fetch(blobURL, token: lenient, method: .HEAD).status == 200)
            tokens.setExpiryClaimOffset(-300 - 90)  // expired 90 s ago: outside it
            let stale = try tokens.issueToken(user: nil, scopes: ["repository:library/public:pull"])
            #expect(try await fetch(blobURL, token: stale, method: .HEAD).status == 401)
            tokens.setExpiryClaimOffset(0)

            // Tampering proxy in front of the registry.
            let tampering = TamperingProxy(upstream: registry.url)
            proxy = tampering
            try await tampering.start()
            let token = try #require(
                try await tokenResponse(tokens, scopes: ["repository:library/public:pull"]).json["token"] as? String)
            let viaProxy = tampering.url + "/v2/library/public/blobs/" + layer.digest

            let challenge = try await fetch(viaProxy, token: nil)
            #expect(challenge.status == 401)
            #expect(challenge.headers.first(name: "www-authenticate")?.contains(tokens.realm) == true)

            let clean = try await fetch(viaProxy, token: token)
            #expect(clean.status == 200)
            #expect(clean.headers.first(name: "docker-content-digest") == layer.digest)
            #expect(FileDigest.sha256(clean.body) == layer.digest)

            tampering.setMode(.flipByte)
            let flipped = try await fetch(viaProxy, token: token)
            #expect(flipped.status == 200)
            #expect(flipped.body.count == layer.size)
            #expect(FileDigest.sha256(flipped.body) != layer.digest)
            let head = try await fetch(viaProxy, token: token, method: .HEAD)
            #expect(head.status == 200)
            #expect(head.headers.first(name: "content-length") == String(layer.size))

            tampering.setMode(.shortBody)
            let short = try await fetch(viaProxy, token: token)
            #expect(short.status == 200)
            #expect(short.body.count == layer.size - 1024)

            tampering.setMode(.error500)
            #expect(try await fetch(viaProxy, token: token).status == 500)

            tampering.setMode(.truncate)
            await #expect(throws: (any Error).self) { try await fetch(viaProxy, token: token) }
            tampering.setMode(.resetMidStream)
            await #expect(throws: (any Error).self) { try await fetch(viaProxy, token: token) }

            tampering.setMode(.passthrough)
            #expect(FileDigest.sha256(try await fetch(viaProxy, token: token).body) == layer.digest)
            #expect(tampering.count(method: "GET", pathContaining: "/blobs/") == 8)
            #expect(tampering.count(method: "HEAD", pathContaining: "/blobs/") == 1)

            // Everything stops, and the registry process is gone.
            await cleanUp()
            #expect(kill(registryPID, 0) != 0)
        } catch {
            await cleanUp()
            throw error
        }
    }

    @Test func childProcessTerminateEscalatesToKill() async throws {
        let work = try TemporaryDirectory()
        defer { work.remove() }
        let child = try ChildProcess.spawn(
            executable: "/bin/sh", arguments: ["-c", "trap '' TERM; while :; do sleep 0.05; done"],
            outputPath: work.path + "/out.log")
        try await Task.sleep(for: .milliseconds(200))
        #expect(child.isRunning)
        let status = await child.terminate(timeout: .milliseconds(300))
        #expect(status == 128 + SIGKILL)
        #expect(!child.isRunning)
        #expect(kill(child.pid, 0) != 0)
    }

    @Test func largeLayersGenerateQuickly() throws {
        let work = try TemporaryDirectory()
        defer { work.remove() }
        let generator = try ImageGenerator(directory: work.path, seed: 99)
        let clock = ContinuousClock()
        let start = clock.now
        let (layer, _) = try generator.layer(payloadSize: 256 << 20, mediaType: ManifestFormat.oci.layerMediaType)
        let elapsed = clock.now - start
        print("256 MiB layer in \(elapsed)")
        #expect(layer.size > 256 << 20)
        #expect(elapsed < .seconds(30))
    }

    @Test func freePortsAreUsable() throws {
        let port = try FreePort.loopback()
        #expect(port > 0 && port < 65536)
    }
}

// MARK: - Helpers

private struct TemporaryDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-fixture-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

private func fileSize(_ path: String) throws -> Int {
    (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? -1
}

private func shell(_ command: String) async throws -> (status: Int32, output: String) {
    let log = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-sh-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: log) }
    let child = try ChildProcess.spawn(executable: "/bin/sh", arguments: ["-c", command], outputPath: log)
    let status: Int32
    do {
        status = try await child.waitForExit(timeout: .seconds(60))
    } catch {
        await child.terminate()
        throw error
    }
    return (status, child.output())
}

private struct Fetched {
    let status: Int
    let headers: HTTPHeaders
    let body: [UInt8]
}

private func fetch(_ url: String, token: String?, method: HTTPMethod = .GET) async throws -> Fetched {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    let body = try await response.body.collect(upTo: 64 << 20)
    return Fetched(status: Int(response.status.code), headers: response.headers, body: Array(buffer: body))
}

private func tokenResponse(
    _ server: TokenServer, scopes: [String], credentials: (String, String)? = nil
) async throws -> (status: Int, json: [String: Any]) {
    var components = URLComponents(string: server.realm)!
    components.queryItems = [URLQueryItem(name: "service", value: server.service)]
        + scopes.map { URLQueryItem(name: "scope", value: $0) }
    var request = HTTPClientRequest(url: components.url!.absoluteString)
    if let (user, password) = credentials {
        let encoded = Data("\(user):\(password)".utf8).base64EncodedString()
        request.headers.add(name: "Authorization", value: "Basic \(encoded)")
    }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
    let body = try await response.body.collect(upTo: 1 << 20)
    let json = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
    return (Int(response.status.code), json)
}

/// Decodes (without verifying) the claims of a JWT.
private func claims(_ token: String) throws -> [String: Any] {
    let parts = token.split(separator: ".")
    guard parts.count == 3 else { throw FixtureError.invalid("not a JWT") }
    var payload = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    while payload.count % 4 != 0 { payload += "=" }
    let data = try #require(Data(base64Encoded: payload))
    return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
}
