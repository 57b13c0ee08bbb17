import Foundation
import Logging
import OCIDistribution
import Testing
import WharfAuth
import WharfClock
import WharfMirror
import WharfTestSupport
import WharfUpstream

/// Who gets private content, per client-auth mode, against Distribution 2.8 with token auth:
/// `private/secret` is readable by alice only, `team/public` by anyone.
@Suite(.serialized, .timeLimit(.minutes(10)), .tags(.integration, .realClients))
struct ClientAuthTests {
    static let alice = UpstreamCredentials(username: "alice", password: "alice-secret")

    /// An upstream with one private and one public image.
    struct Fixture {
        let upstream: UpstreamEnvironment
        let secret: GeneratedImage
        let open: GeneratedImage

        static func start() async throws -> Fixture {
            let upstream = try UpstreamEnvironment()
            let secret = try upstream.generator.image(layerSizes: [120_000], format: .dockerSchema2)
            let open = try upstream.generator.image(layerSizes: [90_000], format: .oci)
            try upstream.storage.add(image: secret, repository: "private/secret", tag: "v1")
            try upstream.storage.add(image: open, repository: "team/public", tag: "v1")
            try await upstream.start()
            return Fixture(upstream: upstream, secret: secret, open: open)
        }

        func mirrorUpstream(credentials: UpstreamCredentials?) throws -> MirrorUpstream {
            MirrorUpstream(
                configuration: try UpstreamConfiguration(
                    name: "test-upstream", url: self.upstream.registry.url, credentials: credentials, tokenRealms: [self.upstream.tokens.realm]),
                isDefault: true)
        }
    }

    static func get(_ path: String, _ port: Int, auth: String? = nil, method: String = "GET") async throws -> RawHTTP.Response {
        var request = "\(method) \(path) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n"
        if let auth { request += "Authorization: \(auth)\r\n" }
        return try await RawHTTP.request(request + "\r\n", port: port)
    }

    static func basic(_ user: String, _ password: String) -> String {
        "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
    }

    /// The fill commits just after the client got its last byte.
    static func eventuallyCached(_ wharf: WharfInstance, _ digest: String, sourceLocation: SourceLocation = #_sourceLocation) async {
        await eventually(within: .seconds(2), "\(digest) was not cached", sourceLocation: sourceLocation) {
            wharf.cachedBlobHexes().contains(String(digest.dropFirst(7)))
        }
    }

    /// No answer may carry the upstream's challenge or anything that looks like its token.
    static func expectNoUpstreamAuth(_ r: RawHTTP.Response) {
        let challenge = r.header("www-authenticate") ?? ""
        #expect(!challenge.lowercased().contains("bearer"), "upstream challenge relayed: \(challenge)")
        #expect(!r.bodyText.contains("eyJ"), "a token-like value reached the client")
    }

    @Test("open mode with the mirror's credentials: anyone pulls what the mirror may; a private layer never leaks through a public name")
    func openModeGatesDigestsPerRepository() async throws {
        let f = try await Fixture.start()
        let wharf = try await WharfInstance.start(upstreams: [try f.mirrorUpstream(credentials: Self.alice)])
        do {
            let privateLayer = f.secret.layers[0].digest
            // The mirror's own rights (alice) serve anyone: that is what open mode means.
            let manifest = try await Self.get("/v2/private/secret/manifests/v1", wharf.port)
            #expect(manifest.status == 200)
            let layer = try await Self.get("/v2/private/secret/blobs/\(privateLayer)", wharf.port)
            #expect(layer.status == 200 && Digest.sha256(of: layer.body).description == privateLayer)
            await Self.eventuallyCached(wharf, privateLayer)

            // Cached now, but team/public never had it: refused, even though Wharf holds the bytes.
            let before = try f.upstream.registry.requestCount(method: "HEAD", pathContaining: "/v2/team/public/blobs/")
            for _ in 0..<2 {
                let leak = try await Self.get("/v2/team/public/blobs/\(privateLayer)", wharf.port)
                #expect(leak.status == 404 && leak.bodyText.contains("BLOB_UNKNOWN"), "\(leak.status) \(leak.bodyText)")
                let leakHead = try await Self.get("/v2/team/public/blobs/\(privateLayer)", wharf.port, method: "HEAD")
                #expect(leakHead.status == 404)
            }
            #expect(try f.upstream.registry.requestCount(method: "HEAD", pathContaining: "/v2/team/public/blobs/") > before, "the upstream was asked")
            let privateManifestViaPublic = try await Self.get("/v2/team/public/manifests/\(f.secret.manifest.digest)", wharf.port)
            #expect(privateManifestViaPublic.status == 404 && privateManifestViaPublic.bodyText.contains("MANIFEST_UNKNOWN"))

            // The public image's own blobs are linked by its manifest and served without asking again.
            _ = try await Self.get("/v2/team/public/manifests/v1", wharf.port)
            let headsBefore = try f.upstream.registry.requestCount(method: "HEAD", pathContaining: "/blobs/")
            let own = try await Self.get("/v2/team/public/blobs/\(f.open.layers[0].digest)", wharf.port)
            #expect(own.status == 200)
            let again = try await Self.get("/v2/team/public/blobs/\(f.open.layers[0].digest)", wharf.port)
            #expect(again.status == 200)
            #expect(try f.upstream.registry.requestCount(method: "HEAD", pathContaining: "/blobs/") == headsBefore)
            #expect(wharf.mirror.stats.crossRepositoryRefusals.value >= 2)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await f.upstream.stop()
    }

    @Test("htpasswd: no or wrong credentials get 401 with Wharf's Basic challenge, a listed user pulls; plain HTTP refuses credentials unless allowed")
    func htpasswdMode() async throws {
        let f = try await Fixture.start()
        let dir = try TempDirectory.make("htpasswd")
        let file = dir + "/htpasswd"
        try (HtpasswdFile.entry(user: "carol", password: "carol-pw", cost: 6) + "\n# comment\nbroken-line\n")
            .write(toFile: file, atomically: true, encoding: .utf8)
        let allowed = try await WharfInstance.start(upstreams: [try f.mirrorUpstream(credentials: Self.alice)], auth: { logger in
            ClientAuthenticator(mode: .htpasswd, htpasswd: try HtpasswdFile(path: file, logger: logger), allowWithoutTLS: true, logger: logger)
        })
        let strict = try await WharfInstance.start(upstreams: [try f.mirrorUpstream(credentials: Self.alice)], auth: { logger in
            ClientAuthenticator(mode: .htpasswd, htpasswd: try HtpasswdFile(path: file, logger: logger), logger: logger)
        })
        do {
            for path in ["/v2/", "/v2/team/public/manifests/v1", "/v2/team/public/blobs/\(f.open.layers[0].digest)"] {
                let anonymous = try await Self.get(path, allowed.port)
                #expect(anonymous.status == 401 && anonymous.bodyText.contains("UNAUTHORIZED"), "\(path): \(anonymous.status)")
                #expect(anonymous.header("www-authenticate") == "Basic realm=\"wharf\"")
                let wrong = try await Self.get(path, allowed.port, auth: Self.basic("carol", "nope"))
                #expect(wrong.status == 401)
                let unknownUser = try await Self.get(path, allowed.port, auth: Self.basic("mallory", "carol-pw"))
                #expect(unknownUser.status == 401)
                // Another scheme, or Basic that is not `user:password`, is told which scheme to use (RFC 9110 §11.6.1).
                let nulPassword = "Basic " + Data("carol:carol-pw\u{0}anything".utf8).base64EncodedString()
                for auth in ["Bearer stale-token", "Digest x", "Basic", "Basic ====", "Basic " + Data([0xFF, 0x3A, 0xFE]).base64EncodedString(), nulPassword] {
                    let refused = try await Self.get(path, allowed.port, auth: auth)
                    #expect(refused.status == 401 && refused.header("www-authenticate") == "Basic realm=\"wharf\"", "\(auth): \(refused.status)")
                }
            }
            let ok = try await Self.get("/v2/private/secret/manifests/v1", allowed.port, auth: Self.basic("carol", "carol-pw"))
            #expect(ok.status == 200, "\(ok.bodyText)")
            Self.expectNoUpstreamAuth(ok)
            // Status pages stay open for probes and scrapers.
            #expect(try await Self.get("/healthz", allowed.port).status == 200)

            let out = try TempDirectory.make("skopeo-htpasswd")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let pulled = try await Skopeo.copy(
                source: "docker://\(allowed.host)/team/public:v1", destinationDirectory: out + "/a", extraArguments: ["--src-creds", "carol:carol-pw"])
            #expect(pulled.status == 0, "\(pulled.output)")
            #expect(try SkopeoDir.verify(directory: out + "/a", expected: f.open.blobs) == [])
            let refused = try await Skopeo.copy(
                source: "docker://\(allowed.host)/team/public:v1", destinationDirectory: out + "/b", extraArguments: ["--src-creds", "carol:bad"])
            #expect(refused.status != 0)

            // Without allow-without-TLS, a plain listener refuses the registry API outright.
            let plain = try await Self.get("/v2/team/public/manifests/v1", strict.port, auth: Self.basic("carol", "carol-pw"))
            #expect(plain.status == 403 && plain.bodyText.contains("HTTPS"), "\(plain.status) \(plain.bodyText)")
        } catch {
            Issue.record(error)
        }
        await allowed.stop()
        await strict.stop()
        await f.upstream.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test("pass-through: each client gets exactly what the upstream grants it, cached or not, and never through another repository")
    func passThroughMode() async throws {
        let f = try await Fixture.start()
        // No mirror credentials at all: only clients' own rights reach private content.
        let wharf = try await WharfInstance.start(upstreams: [try f.mirrorUpstream(credentials: nil)], auth: { logger in
            ClientAuthenticator(mode: .passthrough, allowWithoutTLS: true, logger: logger)
        })
        do {
            let privateLayer = f.secret.layers[0].digest
            let alice = Self.basic("alice", "alice-secret"), bob = Self.basic("bob", "bob-secret")
            let ping = try await Self.get("/v2/", wharf.port)
            #expect(ping.status == 401 && ping.header("www-authenticate") == "Basic realm=\"wharf\"")
            #expect(try await Self.get("/v2/", wharf.port, auth: alice).status == 200)

            // Public content: anyone, including anonymous clients.
            #expect(try await Self.get("/v2/team/public/manifests/v1", wharf.port).status == 200)
            #expect(try await Self.get("/v2/team/public/manifests/v1", wharf.port, auth: bob).status == 200)

            // Private, before anything is cached.
            let anonymous = try await Self.get("/v2/private/secret/manifests/v1", wharf.port)
            #expect(anonymous.status == 401 && anonymous.header("www-authenticate") == "Basic realm=\"wharf\"")
            Self.expectNoUpstreamAuth(anonymous)
            let bobDenied = try await Self.get("/v2/private/secret/manifests/v1", wharf.port, auth: bob)
            #expect(bobDenied.status == 403 && bobDenied.bodyText.contains("DENIED"), "\(bobDenied.status) \(bobDenied.bodyText)")
            let badPassword = try await Self.get("/v2/private/secret/manifests/v1", wharf.port, auth: Self.basic("alice", "wrong"))
            #expect(badPassword.status == 401)
            #expect(wharf.cachedBlobHexes().isEmpty)

            // alice pulls it with a real client: her credentials are exchanged upstream.
            let out = try TempDirectory.make("skopeo-pass")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let pulled = try await Skopeo.copy(
                source: "docker://\(wharf.host)/private/secret:v1", destinationDirectory: out + "/a", extraArguments: ["--src-creds", "alice:alice-secret"])
            #expect(pulled.status == 0, "\(pulled.output)")
            #expect(try SkopeoDir.verify(directory: out + "/a", expected: f.secret.blobs) == [])
            await Self.eventuallyCached(wharf, privateLayer)
            #expect(f.upstream.tokens.requests.contains { $0.user == "alice" && $0.scopes.contains("repository:private/secret:pull") })

            // Cached now: still only alice.
            let anonymousBlob = try await Self.get("/v2/private/secret/blobs/\(privateLayer)", wharf.port)
            #expect(anonymousBlob.status == 401)
            let bobBlob = try await Self.get("/v2/private/secret/blobs/\(privateLayer)", wharf.port, auth: bob)
            #expect(bobBlob.status == 403)
            let bobManifest = try await Self.get("/v2/private/secret/manifests/\(f.secret.manifest.digest)", wharf.port, auth: bob)
            #expect(bobManifest.status == 403)
            let aliceBlob = try await Self.get("/v2/private/secret/blobs/\(privateLayer)", wharf.port, auth: alice)
            #expect(aliceBlob.status == 200 && Digest.sha256(of: aliceBlob.body).description == privateLayer)
            // Through a public name: refused for everyone, alice included (that repository does not hold it).
            for who in [nil, bob, alice] {
                let leak = try await Self.get("/v2/team/public/blobs/\(privateLayer)", wharf.port, auth: who)
                #expect(leak.status == 404 && leak.bodyText.contains("BLOB_UNKNOWN"), "\(leak.status) \(leak.bodyText)")
            }
            let refusedPull = try await Skopeo.copy(
                source: "docker://\(wharf.host)/private/secret:v1", destinationDirectory: out + "/b", extraArguments: ["--src-creds", "bob:bob-secret"])
            #expect(refusedPull.status != 0)
            #expect(wharf.mirror.stats.authRefusals.value > 0)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await f.upstream.stop()
    }

    /// Issue #12, bug 3: a manifest in a public repository that names another repository's private
    /// layer (as a foreign layer, or as a plain one: not every registry checks what is pushed) does
    /// not open the cached layer through the public name: Distribution itself answers 404 there.
    @Test("pass-through: a manifest naming another repository's cached private layer does not make it readable there")
    func trojanManifestsDoNotLeak() async throws {
        let f = try await Fixture.start()
        let wharf = try await WharfInstance.start(upstreams: [try f.mirrorUpstream(credentials: nil)], auth: { logger in
            ClientAuthenticator(mode: .passthrough, allowWithoutTLS: true, logger: logger)
        })
        do {
            let layer = f.secret.layers[0]
            let alice = Self.basic("alice", "alice-secret"), bob = Self.basic("bob", "bob-secret")
            #expect(try await Self.get("/v2/private/secret/manifests/v1", wharf.port, auth: alice).status == 200)
            #expect(try await Self.get("/v2/private/secret/blobs/\(layer.digest)", wharf.port, auth: alice).status == 200)
            await Self.eventuallyCached(wharf, layer.digest)

            for (repository, foreign) in [("team/trojan", true), ("team/plain-trojan", false)] {
                try Self.pushTrojan(f, naming: layer, foreign: foreign, repository: repository)
                #expect(try await Self.get("/v2/\(repository)/manifests/v1", wharf.port, auth: bob).status == 200)
                for who in [nil, bob, alice] {
                    let leak = try await Self.get("/v2/\(repository)/blobs/\(layer.digest)", wharf.port, auth: who)
                    #expect(leak.status == 404 && leak.bodyText.contains("BLOB_UNKNOWN"), "\(repository): \(leak.status), \(leak.body.count) bytes")
                    let head = try await Self.get("/v2/\(repository)/blobs/\(layer.digest)", wharf.port, auth: who, method: "HEAD")
                    #expect(head.status == 404, "\(repository) HEAD: \(head.status)")
                }
            }
            // The image's own layers still come through its own public repository.
            #expect(try await Self.get("/v2/team/public/manifests/v1", wharf.port).status == 200)
            let publicAgain = try await Self.get("/v2/team/public/blobs/\(f.open.layers[0].digest)", wharf.port)
            #expect(publicAgain.status == 200 && Digest.sha256(of: publicAgain.body).description == f.open.layers[0].digest)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await f.upstream.stop()
    }

    /// Writes to the upstream's storage a public `repository:v1` whose manifest names `layer` (its
    /// bytes are not in that repository), as a foreign layer with `urls` or as a plain layer.
    static func pushTrojan(_ f: Fixture, naming layer: GeneratedBlob, foreign: Bool, repository: String) throws {
        let config = f.open.config
        let layerType = foreign ? "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" : "application/vnd.oci.image.layer.v1.tar+gzip"
        let urls = foreign ? #","urls":["https://example.invalid/layer"]"# : ""
        let json = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"\#(config.mediaType)","digest":"\#(config.digest)","size":\#(config.size)},"layers":[{"mediaType":"\#(layerType)","digest":"\#(layer.digest)","size":\#(layer.size)\#(urls)}]}"#
        let bytes = Data(json.utf8)
        let path = f.upstream.directory + "/trojan-\(foreign)"
        try bytes.write(to: URL(fileURLWithPath: path))
        let manifest = GeneratedBlob(
            digest: Digest.sha256(of: Array(bytes)).description, size: bytes.count, path: path, mediaType: "application/vnd.oci.image.manifest.v1+json")
        try f.upstream.storage.addBlob(config, repository: repository)
        try f.upstream.storage.addManifest(manifest, repository: repository)
        try f.upstream.storage.setTag("v1", repository: repository, manifestDigest: manifest.digest)
    }

    @Test("pass-through decisions are cached briefly; once expired and the upstream is down, access fails closed")
    func passThroughFailsClosed() async throws {
        let f = try await Fixture.start()
        let clock = ManualClock()
        let wharf = try await WharfInstance.start(upstreams: [try f.mirrorUpstream(credentials: nil)], auth: { logger in
            ClientAuthenticator(mode: .passthrough, allowWithoutTLS: true, decisions: AccessDecisions(clock: clock.clock), logger: logger)
        })
        do {
            let alice = Self.basic("alice", "alice-secret")
            let layer = "/v2/private/secret/blobs/\(f.secret.layers[0].digest)"
            #expect(try await Self.get("/v2/private/secret/manifests/v1", wharf.port, auth: alice).status == 200)
            #expect(try await Self.get(layer, wharf.port, auth: alice).status == 200)
            await Self.eventuallyCached(wharf, f.secret.layers[0].digest)
            try await f.upstream.registry.stop()
            // Within the grant's lifetime the cached layer is still served to alice.
            #expect(try await Self.get(layer, wharf.port, auth: alice).status == 200)
            clock.advance(by: .seconds(61))  // past the default 60 s grant
            // Expired and the upstream cannot be asked: refused, although the bytes are on disk.
            let closed = try await Self.get(layer, wharf.port, auth: alice)
            #expect(closed.status == 503 && closed.bodyText.contains("UNAVAILABLE"), "\(closed.status) \(closed.bodyText)")
            let anonymous = try await Self.get(layer, wharf.port)
            #expect(anonymous.status == 503 || anonymous.status == 401)
            #expect(anonymous.body.count < 1000, "no layer bytes for an unconfirmed client")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await f.upstream.stop()
    }
}
