import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import OCIDistribution
import Testing
import WharfMirror
import WharfStorage
import WharfTestSupport
@testable import WharfUpstream

/// Hostile clients against the upstream side, and hostile upstreams: the breaker cannot be opened by
/// one client's bad requests, redirects do not reach local services, credentials stay with the
/// upstream, 429 holds are scoped and capped, pool waits and dribbled bodies are bounded.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct HostileUpstreamTests {
    static let accept = "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json\r\n"
    static let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    static func get(_ path: String, port: Int) async throws -> RawHTTP.Response {
        try await RawHTTP.request("GET \(path) HTTP/1.1\r\nHost: w\r\n\(accept)Connection: close\r\n\r\n", port: port)
    }

    /// Answers from a table for the names it knows (pretending they are elsewhere), the system otherwise.
    struct PretendResolver: HostResolver {
        let table: [String: [IPAddress]]
        func addresses(of host: String) async throws -> [IPAddress] {
            if let pretended = self.table[host] { return pretended }
            return try await SystemHostResolver().addresses(of: host)
        }
    }

    static func generator() throws -> (ImageGenerator, String) {
        let dir = try TempDirectory.make("hostile-images")
        return (try ImageGenerator(directory: dir, seed: UInt64.random(in: 1...UInt64.max)), dir)
    }

    // MARK: (a) the breaker

    @Test("Distribution's 500s for a layer digest asked as a manifest do not open the breaker; other tags and blobs still resolve")
    func breakerAbuse() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [1000, 2000, 3000], format: .oci)
        let other = try upstream.generator.image(layerSizes: [1500], format: .oci)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try upstream.storage.add(image: other, repository: "team/other", tag: "v1")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            var statuses: [Int] = []
            for _ in 0..<12 {  // one key, again and again
                statuses.append(try await Self.get("/v2/team/app/manifests/\(image.layers[0].digest)", port: wharf.port).status)
            }
            for _ in 0..<4 {  // three distinct keys: the breaker asks /v2/ (which answers 401: healthy)
                for layer in image.layers { statuses.append(try await Self.get("/v2/team/app/manifests/\(layer.digest)", port: wharf.port).status) }
            }
            #expect(statuses.allSatisfy { $0 == 503 }, "\(statuses)")
            #expect(wharf.mirror.upstream.health.lastError == "HTTP 500", "the premise: Distribution answers these with 500")
            #expect(wharf.mirror.upstream.health.circuit == .closed)
            #expect(wharf.mirror.upstream.health.reachable != false)

            let tag = try await Self.get("/v2/team/other/manifests/v1", port: wharf.port)
            #expect(tag.status == 200, "an uncached tag: \(tag.status) \(tag.bodyText)")
            let blob = try await Self.get("/v2/team/other/blobs/\(other.layers[0].digest)", port: wharf.port)
            #expect(blob.status == 200, "an uncached blob: \(blob.status)")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }

    // MARK: (b) redirects

    @Test("redirects to http+unix, file and in a loop are refused; a loopback upstream may still redirect to loopback")
    func redirectSchemesAndLoops() async throws {
        let (generator, dir) = try Self.generator()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let secret = try generator.image(layerSizes: [100], format: .oci)
        let secretManifest = try secret.manifest.data()
        // A local service reachable over a Unix socket and over TCP; an attacker wants its answers cached.
        let socketPath = NSTemporaryDirectory() + "wharf-internal-\(UUID().uuidString.prefix(8)).sock"
        let unixService = HostileUpstream(), tcpService = HostileUpstream()
        for s in [unixService, tcpService] { s.script(prefix: "/", .manifest(Array(secretManifest))) }
        try await unixService.start(unixSocketPath: socketPath)
        try await tcpService.start()
        let evil = HostileUpstream()
        let encoded = socketPath.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        evil.script("/v2/team/app/manifests/unix", .redirect(to: "http+unix://\(encoded)/v2/team/app/manifests/v1"))
        evil.script("/v2/team/app/manifests/file", .redirect(to: "file:///etc/hostname"))
        evil.script("/v2/team/app/manifests/loop", .redirect(to: "/v2/team/app/manifests/loop"))
        evil.script("/v2/team/app/manifests/cdn", .redirect(to: "http://127.0.0.1:\(tcpService.port)/cdn/manifest?sig=1"))
        try await evil.start()
        let wharf = try await WharfInstance.start(upstream: evil.url)
        do {
            for tag in ["unix", "file", "loop"] {
                let r = try await Self.get("/v2/team/app/manifests/\(tag)", port: wharf.port)
                #expect(r.status == 503, "\(tag): \(r.status) \(r.bodyText)")
                #expect(!r.bodyText.contains("\"schemaVersion\""), "\(tag): the redirect target's answer was served")
            }
            #expect(unixService.requests.isEmpty, "Wharf connected to the Unix socket")
            #expect(evil.count(pathPrefix: "/v2/team/app/manifests/loop") == 1 + RedirectPolicy.maxRedirects)
            #expect(try wharf.mirror.index.manifest(Digest(parsing: secret.manifest.digest)) == nil, "the redirect target's answer was cached")

            // A registry on 127.0.0.1 redirecting to another port of 127.0.0.1 (a local storage host): followed.
            let cdn = try await Self.get("/v2/team/app/manifests/cdn", port: wharf.port)
            #expect(cdn.status == 200 && cdn.header("docker-content-digest") == secret.manifest.digest)
            #expect(tcpService.requests.first?.headers.first(name: "authorization") == nil)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await evil.stop()
        await unixService.stop()
        await tcpService.stop()
        try? FileManager.default.removeItem(atPath: socketPath)
    }

    @Test("an upstream whose name resolves to a public address cannot redirect Wharf to 127.0.0.1 or to a name that resolves there")
    func publicUpstreamToLoopback() async throws {
        let (generator, dir) = try Self.generator()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let secret = try generator.image(layerSizes: [100], format: .oci)
        let service = HostileUpstream()
        service.script(prefix: "/", .manifest(Array(try secret.manifest.data())))
        try await service.start()
        let evil = HostileUpstream()
        evil.script("/v2/team/app/manifests/literal", .redirect(to: "http://127.0.0.1:\(service.port)/latest/meta-data/"))
        evil.script("/v2/team/app/manifests/named", .redirect(to: "http://rebind.example.test:\(service.port)/latest/meta-data/"))
        try await evil.start()
        // Wharf connects to `localhost` as usual; the redirect check is told it is a public address
        // (203.0.113.10), as `registry.example.com` would be, and that rebind.example.test is 127.0.0.1.
        let resolver = PretendResolver(table: ["localhost": [IPAddress("203.0.113.10")!], "rebind.example.test": [IPAddress("127.0.0.1")!]])
        let configuration = try UpstreamConfiguration(name: "public", url: "http://localhost:\(evil.port)")
        let wharf = try await WharfInstance.start(
            upstreams: [MirrorUpstream(configuration: configuration, isDefault: true)], httpClients: UpstreamHTTPClients.make(resolver: resolver))
        do {
            for tag in ["literal", "named"] {
                let r = try await Self.get("/v2/team/app/manifests/\(tag)", port: wharf.port)
                #expect(r.status == 503, "\(tag): \(r.status) \(r.bodyText)")
            }
            #expect(evil.count(pathPrefix: "/v2/team/app/manifests/") == 2, "the upstream was asked")
            #expect(service.requests.isEmpty, "Wharf followed a public upstream's redirect into loopback")
            #expect(try wharf.mirror.index.manifest(Digest(parsing: secret.manifest.digest)) == nil)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await evil.stop()
        await service.stop()
    }

    // MARK: (c) credentials

    @Test("credentials do not go to a token realm on another port of the upstream's host unless it is listed")
    func realmOnAnotherPort() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [1000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try upstream.storage.add(image: image, repository: "private/secret", tag: "v1")
        try await upstream.start()
        let alice = UpstreamCredentials(username: "alice", password: "alice-secret")
        #expect(!upstream.tokens.realm.hasPrefix(upstream.registry.url), "the premise: the realm is on another port")
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url, credentials: alice)
        do {
            #expect(try await Self.get("/v2/team/app/manifests/v1", port: wharf.port).status == 200)
            #expect(try await Self.get("/v2/private/secret/manifests/v1", port: wharf.port).status == 404)
            let requests = upstream.tokens.requests
            #expect(!requests.isEmpty)
            #expect(requests.allSatisfy { $0.user == nil && $0.account == nil }, "credentials sent: \(requests.map { $0.user ?? "-" })")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()

        let listed = try await WharfInstance.start(upstream: upstream.registry.url, credentials: alice, tokenRealms: [upstream.tokens.realm])
        do {
            #expect(try await Self.get("/v2/private/secret/manifests/v1", port: listed.port).status == 200)
            #expect(upstream.tokens.requests.contains { $0.user == "alice" })
        } catch {
            Issue.record(error)
        }
        await listed.stop()
        await upstream.stop()
    }

    // MARK: (d) 429

    @Test("a 429 with Retry-After: 3600 on one repository's blob holds neither another repository nor for an hour")
    func scopedRateLimit() async throws {
        let (generator, dir) = try Self.generator()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try generator.image(layerSizes: [100], format: .oci), b = try generator.image(layerSizes: [200], format: .oci)
        let hostile = HostileUpstream()
        hostile.script("/v2/team/a/manifests/v1", .manifest(Array(try a.manifest.data())))
        hostile.script("/v2/team/b/manifests/v1", .manifest(Array(try b.manifest.data())))
        hostile.script(prefix: "/v2/team/a/blobs/", .rateLimited(retryAfter: 3600))
        try await hostile.start()
        let wharf = try await WharfInstance.start(upstream: hostile.url)
        do {
            #expect(try await Self.get("/v2/team/a/manifests/v1", port: wharf.port).status == 200)
            _ = try await Self.get("/v2/team/a/blobs/\(a.layers[0].digest)", port: wharf.port)
            #expect(hostile.count(pathPrefix: "/v2/team/a/blobs/") >= 1, "the upstream answered 429")

            let other = try await Self.get("/v2/team/b/manifests/v1", port: wharf.port)
            #expect(other.status == 200, "another repository was held: \(other.status) \(other.bodyText)")
            let same = try await Self.get("/v2/team/a/manifests/v2", port: wharf.port)
            #expect(same.status == 429, "the rate-limited repository is held")
            let retryAfter = Int(same.header("retry-after") ?? "") ?? 0
            #expect(retryAfter > 0 && retryAfter <= 300, "Retry-After \(retryAfter)")
            #expect(hostile.count(pathPrefix: "/v2/team/a/manifests/v2") == 0)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await hostile.stop()
    }

    // MARK: Pools and slow bodies

    @Test("waiting for a pooled connection is not an upstream failure, and manifests do not wait behind blob bodies")
    func poolWaits() async throws {
        let hostile = HostileUpstream()
        hostile.script(prefix: "/v2/r/blobs/", .stall(LoopbackHTTPResponse(status: .ok, body: ByteBuffer(repeating: 7, count: 64 * 1024))))
        hostile.script("/v2/r/manifests/v1", .status(.notFound))
        try await hostile.start()
        let clients = UpstreamHTTPClients.make(blobConnectionsPerHost: 1, metadataConnectionsPerHost: 1, connectTimeout: .milliseconds(300))
        var configuration = try UpstreamConfiguration(url: hostile.url)
        configuration.connectTimeout = .milliseconds(300)
        let client = UpstreamClient(configuration: configuration, httpClients: clients, logger: Self.logger)
        do {
            let digest = { (i: Int) in "blobs/sha256:" + String(repeating: String(i), count: 64) }
            let holding = try await client.send(.GET, repository: "r", path: digest(0))  // the only blob connection, body stalled
            #expect(holding.status == 200)
            var waited = 0
            for i in 1...5 {
                do { _ = try await client.send(.GET, repository: "r", path: digest(i)) } catch { waited += 1 }
            }
            #expect(waited == 5, "the pool had room after all")
            #expect(hostile.count(pathPrefix: "/v2/r/blobs/") == 1, "only the first blob request reached the upstream")
            #expect(client.health.circuit == .closed, "pool waits opened the breaker")
            #expect(client.health.reachable != false && client.requestCounts.errors == 0)
            let manifest = try await client.send(.GET, repository: "r", path: "manifests/v1")
            #expect(manifest.status == 404, "the manifest request waited behind the blob body")
            hostile.releaseStalled()
            #expect(try await holding.collect(upTo: 1 << 20).readableBytes == 64 * 1024)
        } catch {
            Issue.record(error)
        }
        hostile.releaseStalled()
        try? await clients.shutdown()
        await hostile.stop()
    }

    @Test("a manifest body dribbling one byte at a time is cut off at the body deadline")
    func dribbledManifest() async throws {
        let (generator, dir) = try Self.generator()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = try generator.image(layerSizes: [100], format: .oci)
        let bytes = Array(try image.manifest.data())
        let hostile = HostileUpstream()
        let response = LoopbackHTTPResponse(
            status: .ok, headers: ["Content-Type": "application/vnd.oci.image.manifest.v1+json"], body: ByteBuffer(bytes: bytes))
        hostile.script("/v2/team/app/manifests/v1", .dribble(response, every: .milliseconds(100)))
        try await hostile.start()
        let configuration = try UpstreamConfiguration(name: "slow", url: hostile.url, bodyTimeout: .seconds(1))
        let wharf = try await WharfInstance.start(upstreams: [MirrorUpstream(configuration: configuration, isDefault: true)])
        do {
            #expect(bytes.count > 100, "the premise: the whole body takes more than 10 s")
            let started = ContinuousClock.now
            let r = try await Self.get("/v2/team/app/manifests/v1", port: wharf.port)
            let took = ContinuousClock.now - started
            #expect(r.status == 503, "\(r.status)")
            #expect(took < .seconds(5), "the slow body held the request for \(took)")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await hostile.stop()
    }
}
