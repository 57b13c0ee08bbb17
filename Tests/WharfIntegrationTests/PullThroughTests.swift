import OCIDistribution
import Synchronization
import WharfMirror
import WharfStorage
import WharfUpstream
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
@testable import WharfHTTP
import WharfTestSupport

/// skopeo → Wharf → Distribution 2.8 (token auth), end to end.
@Suite(.serialized, .timeLimit(.minutes(10)), .tags(.integration, .realClients))
struct PullThroughTests {
    @Test("skopeo pulls a single-arch image and each platform of a multi-arch one through Wharf")
    func skopeoPulls() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [300_000, 2_000_000], format: .dockerSchema2)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        let multi = try upstream.generator.index(
            platforms: [(os: "linux", architecture: "amd64"), (os: "linux", architecture: "arm64")], layerSizes: [500_000], format: .oci)
        try upstream.storage.add(index: multi, repository: "team/multi", tag: "latest")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            let out = try TempDirectory.make("skopeo")
            defer { try? FileManager.default.removeItem(atPath: out) }

            let first = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app:v1", destinationDirectory: out + "/a", extraArguments: [], timeout: .seconds(120))
            #expect(first.status == 0, "skopeo failed: \(first.output)")
            #expect(try SkopeoDir.verify(directory: out + "/a", expected: image.blobs) == [])
            let cached = wharf.cachedBlobHexes()
            for blob in image.blobs { #expect(cached.contains(blob.hex), "blob \(blob.digest) not cached") }
            #expect(wharf.tempFiles().isEmpty)

            // Second pull: served from the cache, no new blob GETs upstream.
            let blobGETsBefore = try upstream.registry.requestCount(method: "GET", pathContaining: "/blobs/")
            let second = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app:v1", destinationDirectory: out + "/b", extraArguments: [], timeout: .seconds(120))
            #expect(second.status == 0, "skopeo failed: \(second.output)")
            #expect(try SkopeoDir.verify(directory: out + "/b", expected: image.blobs) == [])
            #expect(try upstream.registry.requestCount(method: "GET", pathContaining: "/blobs/") == blobGETsBefore)

            for (i, platform) in multi.images.enumerated() {
                let dest = out + "/multi-\(i)"
                let r = try await Skopeo.copy(
                    source: "docker://\(wharf.host)/team/multi:latest", destinationDirectory: dest,
                    extraArguments: ["--override-os", platform.platform.os, "--override-arch", platform.platform.architecture], timeout: .seconds(120))
                #expect(r.status == 0, "skopeo failed for \(platform.platform): \(r.output)")
                #expect(try SkopeoDir.verify(directory: dest, expected: platform.blobs) == [])
                let manifest = try Data(contentsOf: URL(fileURLWithPath: dest + "/manifest.json"))
                #expect(manifest == (try platform.manifest.data()), "platform manifest bytes differ for \(platform.platform)")
            }
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }

    @Test("manifest HEAD carries type, digest and real length; by-digest GET and ranges behave")
    func manifestAndRangeHeaders() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [100_000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            var head = HTTPClientRequest(url: "\(wharf.url)/v2/team/app/manifests/v1")
            head.method = .HEAD
            head.headers.add(name: "Accept", value: "application/vnd.oci.image.manifest.v1+json")
            head.headers.add(name: "Accept", value: "application/vnd.oci.image.index.v1+json")
            let h = try await client.execute(head, timeout: .seconds(30))
            #expect(h.status == .ok)
            #expect(h.headers.first(name: "content-type") == "application/vnd.oci.image.manifest.v1+json")
            #expect(h.headers.first(name: "docker-content-digest") == image.manifest.digest)
            #expect(h.headers.first(name: "content-length") == String(image.manifest.size))

            // A client that accepts only Docker types never gets the cached OCI manifest.
            var docker = HTTPClientRequest(url: "\(wharf.url)/v2/team/app/manifests/v1")
            docker.headers.add(name: "Accept", value: "application/vnd.docker.distribution.manifest.v2+json")
            let d = try await client.execute(docker, timeout: .seconds(30))
            _ = try await d.body.collect(upTo: 1 << 20)
            #expect(d.headers.first(name: "content-type") != "application/vnd.oci.image.manifest.v1+json" || d.status != .ok)

            let byDigest = try await client.execute(HTTPClientRequest(url: "\(wharf.url)/v2/team/app/manifests/\(image.manifest.digest)"), timeout: .seconds(30))
            let body = try await byDigest.body.collect(upTo: 1 << 20)
            #expect(byDigest.status == .ok)
            #expect(Array(buffer: body) == Array(try image.manifest.data()))

            let layer = image.layers[0]
            let whole = try Data(contentsOf: URL(fileURLWithPath: layer.path))
            for rangeHeader in ["bytes=0-99", "bytes=1000-", "bytes=-500"] {  // first request is a cold fill, later ones hits
                var r = HTTPClientRequest(url: "\(wharf.url)/v2/team/app/blobs/\(layer.digest)")
                r.headers.add(name: "Range", value: rangeHeader)
                let resp = try await client.execute(r, timeout: .seconds(30))
                let got = try await resp.body.collect(upTo: 1 << 24)
                #expect(resp.status == .partialContent, "\(rangeHeader)")
                let expected: Data = switch rangeHeader {
                case "bytes=0-99": whole.prefix(100)
                case "bytes=1000-": whole.dropFirst(1000)
                default: whole.suffix(500)
                }
                #expect(Data(got.readableBytesView) == expected, "\(rangeHeader)")
                let lower = whole.count - expected.count == 0 ? 0 : (rangeHeader == "bytes=1000-" ? 1000 : (rangeHeader == "bytes=-500" ? whole.count - 500 : 0))
                #expect(resp.headers.first(name: "content-range") == "bytes \(lower)-\(lower + expected.count - 1)/\(whole.count)")
            }
            var bad = HTTPClientRequest(url: "\(wharf.url)/v2/team/app/blobs/\(layer.digest)")
            bad.headers.add(name: "Range", value: "bytes=\(whole.count + 10)-")
            let unsat = try await client.execute(bad, timeout: .seconds(30))
            _ = try await unsat.body.collect(upTo: 1 << 16)
            #expect(unsat.status == .rangeNotSatisfiable)
            #expect(unsat.headers.first(name: "content-range") == "bytes */\(whole.count)")

            var blobHead = HTTPClientRequest(url: "\(wharf.url)/v2/team/app/blobs/\(layer.digest)")
            blobHead.method = .HEAD
            let bh = try await client.execute(blobHead, timeout: .seconds(30))
            #expect(bh.status == .ok)
            #expect(bh.headers.first(name: "content-length") == String(layer.size))
        } catch {
            Issue.record(error)
        }
        try? await client.shutdown()
        await wharf.stop()
        await upstream.stop()
    }

    @Test("tags/list pages with n/last and Link (keeping ns); referrers without an API or a fallback tag are an empty index")
    func tagsAndReferrers() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [1000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/app", tag: "a")
        for tag in ["b", "c", "d", "e"] { try upstream.storage.setTag(tag, repository: "team/app", manifestDigest: image.manifest.digest) }
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            let all = try await RawHTTP.request("GET /v2/team/app/tags/list HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(all.status == 200)
            #expect(all.bodyText == #"{"name":"team/app","tags":["a","b","c","d","e"]}"#)
            #expect(all.header("link") == nil)

            // containerd names the registry in `ns`: Wharf routes by it, echoes it, and keeps it in Link.
            let ns = String(upstream.registry.url.dropFirst("http://".count))
            let page1 = try await RawHTTP.request("GET /v2/team/app/tags/list?n=2&ns=\(ns) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(page1.bodyText == #"{"name":"team/app","tags":["a","b"]}"#)
            #expect(page1.header("link") == "</v2/team/app/tags/list?n=2&last=b&ns=\(RequestRouter.percentEncode(ns))>; rel=\"next\"")
            #expect(page1.header("oci-namespace") == ns)
            let foreign = try await RawHTTP.request("GET /v2/team/app/manifests/a?ns=quay.io HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(foreign.status == 404 && foreign.bodyText.contains("NAME_UNKNOWN"), "an unknown ns must not be served from another registry")
            let page3 = try await RawHTTP.request("GET /v2/team/app/tags/list?n=2&last=d HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(page3.bodyText == #"{"name":"team/app","tags":["e"]}"#)
            #expect(page3.header("link") == nil)
            let none = try await RawHTTP.request("GET /v2/team/app/tags/list?n=0 HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(none.bodyText == #"{"name":"team/app","tags":[]}"#)
            #expect(none.header("link") == nil)
            let missing = try await RawHTTP.request("GET /v2/team/nope/tags/list HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(missing.status == 404 && missing.bodyText.contains("NAME_UNKNOWN"))

            // Distribution 2.8 has no referrers API and this image no sha256-<hex> tag: an empty index, never a 404
            // (ReferrersTests covers the tag schema).
            let refs = try await RawHTTP.request("GET /v2/team/app/referrers/\(image.manifest.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(refs.status == 200 && refs.header("content-type") == "application/vnd.oci.image.index.v1+json")
            #expect(refs.bodyText == #"{"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }

    @Test("a private upstream repository: anonymous Wharf cannot read it, Wharf with credentials can")
    func privateRepository() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [150_000], format: .dockerSchema2)
        try upstream.storage.add(image: image, repository: "private/secret", tag: "v1")
        try await upstream.start()
        let anonymous = try await WharfInstance.start(upstream: upstream.registry.url)
        let withCredentials = try await WharfInstance.start(
            upstream: upstream.registry.url, credentials: UpstreamCredentials(username: "alice", password: "alice-secret"),
            tokenRealms: [upstream.tokens.realm])
        do {
            let out = try TempDirectory.make("skopeo-private")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let denied = try await RawHTTP.request("GET /v2/private/secret/manifests/v1 HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: anonymous.port)
            #expect(denied.status == 404 && denied.bodyText.contains("MANIFEST_UNKNOWN"), "\(denied.status) \(denied.bodyText)")
            #expect(denied.header("www-authenticate") == nil, "the upstream's challenge must not be relayed")
            let layer = try await RawHTTP.request("GET /v2/private/secret/blobs/\(image.layers[0].digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: anonymous.port)
            #expect(layer.status == 404 && layer.bodyText.contains("BLOB_UNKNOWN"))
            #expect(anonymous.cachedBlobHexes().isEmpty)

            let r = try await Skopeo.copy(source: "docker://\(withCredentials.host)/private/secret:v1", destinationDirectory: out + "/p", extraArguments: [], timeout: .seconds(60))
            #expect(r.status == 0, "\(r.output)")
            #expect(try SkopeoDir.verify(directory: out + "/p", expected: image.blobs) == [])
            #expect(upstream.tokens.requests.contains { $0.user == "alice" && $0.status == 200 })
        } catch {
            Issue.record(error)
        }
        await anonymous.stop()
        await withCredentials.stop()
        await upstream.stop()
    }

    @Test("large cache hits are delivered whole to clients that send Connection: close (skopeo does)")
    func largeHitsWithConnectionClose() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [12_000_000], format: .dockerSchema2)
        try upstream.storage.add(image: image, repository: "team/big", tag: "v1")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            let out = try TempDirectory.make("skopeo-big")
            defer { try? FileManager.default.removeItem(atPath: out) }
            for round in 0..<3 {  // round 0 fills, later rounds are sendfile hits
                let r = try await Skopeo.copy(source: "docker://\(wharf.host)/team/big:v1", destinationDirectory: out + "/\(round)", extraArguments: [], timeout: .seconds(60))
                #expect(r.status == 0, "round \(round): \(r.output)")
                #expect(try SkopeoDir.verify(directory: out + "/\(round)", expected: image.blobs) == [])
            }
            let layer = image.layers[0]
            let raw = try await RawHTTP.request("GET /v2/team/big/blobs/\(layer.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(raw.status == 200 && raw.body.count == layer.size)
            #expect(Digest.sha256(of: raw.body).description == layer.digest)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }
}
