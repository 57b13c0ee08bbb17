import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution
import Testing
import WharfMirror
import WharfTestSupport

/// `GET /v2/<name>/referrers/<digest>` for every upstream: Distribution 2.8 has no referrers API, so
/// Wharf answers from the referrers-tag-schema index (cached like a tag, served from the cache with
/// the upstream stopped); an upstream with the API is passed through; hostile indexes from either
/// lose their invalid descriptors or get a 502. Neither `oras` nor `regctl` is packaged by Debian,
/// so the client side is raw HTTP.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct ReferrersTests {
    static let sigType = "application/vnd.dev.cosign.artifact.sig.v1+json"
    static let attType = "application/vnd.in-toto+json"

    static func get(_ path: String, port: Int) async throws -> RawHTTP.Response {
        try await RawHTTP.request("GET \(path) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: port)
    }

    /// The referrers answer as a client reads it (decoded here, not by Wharf's own parser).
    struct Listing: Decodable, Equatable {
        struct Entry: Decodable, Equatable {
            let mediaType: String
            let digest: String
            let size: Int
            let artifactType: String?
            let annotations: [String: String]?
        }
        let schemaVersion: Int
        let mediaType: String
        let manifests: [Entry]
    }

    static func listing(_ response: RawHTTP.Response, sourceLocation: SourceLocation = #_sourceLocation) throws -> Listing {
        #expect(response.status == 200, "\(response.status) \(response.bodyText)", sourceLocation: sourceLocation)
        #expect(response.header("content-type") == MediaType.ociIndex, sourceLocation: sourceLocation)
        let listing = try JSONDecoder().decode(Listing.self, from: Data(response.body))
        #expect(listing.schemaVersion == 2 && listing.mediaType == MediaType.ociIndex, sourceLocation: sourceLocation)
        return listing
    }

    static func entry(_ artifact: GeneratedArtifact) -> Listing.Entry {
        .init(
            mediaType: artifact.manifest.mediaType, digest: artifact.manifest.digest, size: artifact.manifest.size,
            artifactType: artifact.artifactType, annotations: artifact.annotations)
    }

    /// An image with a cosign-style signature and an in-toto attestation, and the fallback tag listing both.
    static func seedSigned(_ upstream: UpstreamEnvironment, repository: String) throws -> (GeneratedImage, GeneratedArtifact, GeneratedArtifact) {
        let image = try upstream.generator.image(layerSizes: [1000], format: .oci)
        try upstream.storage.add(image: image, repository: repository, tag: "v1")
        let signature = try upstream.generator.artifact(
            subject: image.manifest, artifactType: Self.sigType,
            payload: Data(#"{"critical":{"image":{"docker-manifest-digest":"\#(image.manifest.digest)"},"type":"cosign container image signature"}}"#.utf8),
            payloadMediaType: "application/vnd.dev.cosign.simplesigning.v1+json",
            annotations: ["dev.cosignproject.cosign/signature": "MEUCIQD-sig", "org.opencontainers.image.created": "2024-01-01T00:00:00Z"])
        let attestation = try upstream.generator.artifact(
            subject: image.manifest, artifactType: Self.attType,
            payload: Data(#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://slsa.dev/provenance/v1"}"#.utf8),
            payloadMediaType: "application/vnd.in-toto+json", annotations: ["org.opencontainers.image.created": "2024-01-02T00:00:00Z"])
        for artifact in [signature, attestation] { try upstream.storage.add(artifact: artifact, repository: repository) }
        let index = try upstream.generator.referrersIndex([signature, attestation])
        try upstream.storage.setReferrersTag(index, subject: image.manifest.digest, repository: repository)
        return (image, signature, attestation)
    }

    @Test("Distribution 2.8: referrers from the sha256-<hex> tag, filtered, cached with the tag TTL, stale when the upstream is gone")
    func tagSchemaFallback() async throws {
        let clock = ManualClock()
        var image: GeneratedImage!, signature: GeneratedArtifact!, attestation: GeneratedArtifact!
        try await withWharf(tagTTL: .seconds(300), clock: clock.clock, seed: { upstream in
            (image, signature, attestation) = try Self.seedSigned(upstream, repository: "team/app")
        }) { f in
            let (wharf, registry) = (f.wharf, f.upstream.registry)
            let path = "/v2/team/app/referrers/\(image.manifest.digest)"

            let all = try await Self.get(path, port: wharf.port)
            #expect(try Self.listing(all).manifests == [Self.entry(signature), Self.entry(attestation)])
            #expect(all.header("oci-filters-applied") == nil)

            let sigs = try await Self.get(path + "?artifactType=\(RequestTarget.encode(Self.sigType))", port: wharf.port)
            #expect(try Self.listing(sigs).manifests == [Self.entry(signature)])
            #expect(sigs.header("oci-filters-applied") == "artifactType")
            let none = try await Self.get(path + "?artifactType=application/vnd.example.none", port: wharf.port)
            #expect(try Self.listing(none).manifests.isEmpty)
            #expect(none.header("oci-filters-applied") == "artifactType")

            // A digest nothing refers to: an empty index, never a 404.
            let unsigned = try await Self.get("/v2/team/app/referrers/\(signature.manifest.digest)", port: wharf.port)
            #expect(try Self.listing(unsigned).manifests.isEmpty)

            // The signature itself is a manifest like any other: fetched by digest and cached.
            let signatureBytes = try signature.manifest.data()
            let sig = try await Self.get("/v2/team/app/manifests/\(signature.manifest.digest)", port: wharf.port)
            #expect(sig.status == 200 && Data(sig.body) == signatureBytes)
            #expect(sig.header("docker-content-digest") == signature.manifest.digest)

            // The API was asked once (its 404 is remembered for the tag TTL); the fallback tag fetched once.
            _ = try await Self.get("/v2/team/app/tags/list", port: wharf.port)  // a marker in the upstream's log
            try await eventually("the upstream's log lacks the tags/list marker") { try registry.requestCount(method: "GET", pathContaining: "/tags/list") == 1 }
            #expect(try registry.requestCount(method: "GET", pathContaining: "/referrers/") == 1)
            #expect(try registry.requestCount(method: "GET", pathContaining: "/manifests/sha256-\(image.manifest.digest.dropFirst(7))") == 1)
            let served = wharf.mirror.stats.referrersServed
            #expect(served[.tagSchema]?.value == 3 && served[.empty]?.value == 1 && served[.upstream]?.value == 0)
            let metrics = try await Self.get("/metrics", port: wharf.port).bodyText
            #expect(metrics.contains(#"wharf_referrers_served_total{source="tag-schema"} 3"#), "\(metrics.split(separator: "\n").filter { $0.contains("referrers") })")
            #expect(metrics.contains(#"wharf_referrers_served_total{source="empty"} 1"#))
            let stats = try JSONSerialization.jsonObject(with: Data(try await Self.get("/stats", port: wharf.port).body)) as? [String: Any]
            #expect((stats?["referrers"] as? [String: Int]) == ["upstream": 0, "tagSchema": 3, "empty": 1])

            // Upstream gone, inside the TTL: the same answers from the cache.
            try await registry.stop()
            let offline = try await Self.get(path, port: wharf.port)
            #expect(try Self.listing(offline).manifests == [Self.entry(signature), Self.entry(attestation)])
            #expect(offline.header("x-wharf-stale") == nil)
            let offlineAtt = try await Self.get(path + "?artifactType=\(RequestTarget.encode(Self.attType))", port: wharf.port)
            #expect(try Self.listing(offlineAtt).manifests == [Self.entry(attestation)])
            let offlineSig = try await Self.get("/v2/team/app/manifests/\(signature.manifest.digest)", port: wharf.port)
            #expect(offlineSig.status == 200 && Data(offlineSig.body) == signatureBytes)

            // Past the TTL the API is asked again, fails, and the fallback tag is served stale.
            clock.advance(by: .seconds(301))
            let stale = try await Self.get(path, port: wharf.port)
            #expect(try Self.listing(stale).manifests == [Self.entry(signature), Self.entry(attestation)])
            #expect(stale.header("x-wharf-stale") == "true" && stale.header("warning")?.hasPrefix("110") == true)
        }
    }

    @Test("bad requests: an artifactType that is not a media type and a bad digest are 400s that never reach the upstream")
    func badRequests() async throws {
        try await withWharf { f in
            let digest = Digest.sha256(of: Array("x".utf8))
            for bad in ["text", "a/b%0D%0AX-Injected:%201", "%2Fx", "a/b;%20q=1"] {
                let r = try await Self.get("/v2/team/app/referrers/\(digest)?artifactType=\(bad)", port: f.wharf.port)
                #expect(r.status == 400 && r.header("x-injected") == nil, "\(bad): \(r.status) \(r.bodyText)")
            }
            let r = try await Self.get("/v2/team/app/referrers/sha256:nothex", port: f.wharf.port)
            #expect(r.status == 400 && r.bodyText.contains("DIGEST_INVALID"))
            #expect(try f.upstream.registry.requestCount(method: "GET", pathContaining: "/referrers/") == 0)
        }
    }

    @Test("an upstream with the API: its index passed through without invalid descriptors, filtered by Wharf if not by it; garbage is a 502")
    func upstreamAPI() async throws {
        let upstream = HostileUpstream()
        let subject = Digest.sha256(of: Array("subject".utf8)), broken = Digest.sha256(of: Array("broken".utf8))
        let sig = Digest.sha256(of: Array("sig".utf8)), att = Digest.sha256(of: Array("att".utf8))
        let manifest = MediaType.ociManifest
        upstream.script("/v2/team/app/referrers/\(subject)", .respond(.json(.ok, """
            {"schemaVersion":2,"mediaType":"\(MediaType.ociIndex)","manifests":[
              {"mediaType":"\(manifest)","digest":"\(sig)","size":10,"artifactType":"\(Self.sigType)","annotations":{"k":"v"}},
              {"mediaType":"application/x\\r\\nX-Injected: 1","digest":"\(att)","size":11,"artifactType":"\(Self.attType)"},
              {"mediaType":"\(manifest)","digest":"sha256:1234","size":12,"artifactType":"\(Self.attType)"},
              {"mediaType":"\(manifest)","digest":"\(att)","size":13,"artifactType":"\(Self.attType)"}
            ]}
            """)))
        upstream.script("/v2/team/app/referrers/\(broken)", .respond(.json(.ok, "<html>not an index</html>")))
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.url)
        do {
            let all = try await Self.get("/v2/team/app/referrers/\(subject)", port: wharf.port)
            #expect(try Self.listing(all).manifests == [
                .init(mediaType: manifest, digest: sig.description, size: 10, artifactType: Self.sigType, annotations: ["k": "v"]),
                .init(mediaType: manifest, digest: att.description, size: 13, artifactType: Self.attType, annotations: nil),
            ])
            #expect(all.header("x-injected") == nil && !all.bodyText.contains("X-Injected"))

            // The upstream ignores the filter (no OCI-Filters-Applied): Wharf applies it.
            let atts = try await Self.get("/v2/team/app/referrers/\(subject)?artifactType=\(RequestTarget.encode(Self.attType))", port: wharf.port)
            #expect(try Self.listing(atts).manifests.map(\.digest) == [att.description])
            #expect(atts.header("oci-filters-applied") == "artifactType")
            let asked = upstream.requests.filter { $0.path.hasPrefix("/v2/team/app/referrers/") }
            #expect(asked.count == 2, "an upstream with the API is asked every time")
            #expect(asked.last?.queryItems.first { $0.name == "artifactType" }?.value == Self.attType)

            let garbage = try await Self.get("/v2/team/app/referrers/\(broken)", port: wharf.port)
            #expect(garbage.status == 502, "\(garbage.status) \(garbage.bodyText)")
            #expect(upstream.count(pathPrefix: "/v2/team/app/manifests/") == 0, "an upstream with the API: no fallback tag")
            #expect(wharf.mirror.stats.referrersServed[.upstream]?.value == 2)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }

    @Test("a hostile fallback tag: invalid descriptors dropped, not JSON is a 502, not an index means no referrers")
    func hostileFallbackTag() async throws {
        let upstream = HostileUpstream()  // unscripted paths, the referrers API included, answer 404
        let (a, b, c) = (Digest.sha256(of: Array("a".utf8)), Digest.sha256(of: Array("b".utf8)), Digest.sha256(of: Array("c".utf8)))
        let sig = Digest.sha256(of: Array("sig".utf8))
        let tag = { (d: Digest) in "/v2/team/app/manifests/sha256-\(d.hex)" }
        let hostileIndex = """
            {"schemaVersion":2,"mediaType":"\(MediaType.ociIndex)","manifests":[
              {"mediaType":"\(MediaType.ociManifest)","digest":"\(sig)","size":10,"artifactType":"\(Self.sigType)"},
              {"mediaType":"\(MediaType.ociManifest)","digest":"\(sig)","size":10,"artifactType":"text/plain\\r\\nSet-Cookie: x=1"},
              {"mediaType":"\(MediaType.ociManifest)","digest":"md5:abc","size":10},
              {"mediaType":"\(MediaType.ociManifest)","digest":"\(sig)","size":-5},
              "not a descriptor", 7, null
            ]}
            """
        upstream.script(tag(a), .manifest(Array(hostileIndex.utf8), mediaType: MediaType.ociIndex))
        upstream.script(tag(b), .manifest(Array("{not json".utf8), mediaType: MediaType.ociIndex))
        upstream.script(tag(c), .manifest(Array(#"{"schemaVersion":2,"mediaType":"\#(MediaType.ociManifest)","layers":[]}"#.utf8)))
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.url)
        do {
            let listed = try await Self.get("/v2/team/app/referrers/\(a)", port: wharf.port)
            #expect(try Self.listing(listed).manifests == [
                .init(mediaType: MediaType.ociManifest, digest: sig.description, size: 10, artifactType: Self.sigType, annotations: nil)
            ])
            #expect(listed.header("set-cookie") == nil)
            let notJSON = try await Self.get("/v2/team/app/referrers/\(b)", port: wharf.port)
            #expect(notJSON.status == 502 && notJSON.bodyText.contains("MANIFEST_INVALID"), "\(notJSON.status) \(notJSON.bodyText)")
            let notIndex = try await Self.get("/v2/team/app/referrers/\(c)", port: wharf.port)
            #expect(try Self.listing(notIndex).manifests.isEmpty)
            #expect(upstream.count(pathPrefix: "/v2/team/app/referrers/") == 1, "the API's 404 was not remembered")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }
}

/// Percent-encoding for a query value in a raw request target.
enum RequestTarget {
    static func encode(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? s
    }
}
