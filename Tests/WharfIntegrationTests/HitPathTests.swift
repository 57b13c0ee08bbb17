import Foundation
import OCIDistribution
import Testing
import WharfHTTP
import WharfMirror
import WharfStorage
import WharfTestSupport

/// Hits answered on the event loop (`HitPath`) and requests left to the async handler share a
/// connection: pipelined requests must still be answered in order, each with its own bytes.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct HitPathTests {
    @Test("pipelined miss, hit, manifest and HEAD on one connection come back in order and intact")
    func pipelinedOrder() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [3_000_000, 20_000], format: .dockerSchema2)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            let big = image.layers[0], small = image.layers[1]
            // Cache the manifest (links the blobs) and the small layer: they become hits.
            _ = try await RawHTTP.request("GET /v2/team/app/manifests/v1 HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            _ = try await RawHTTP.request("GET /v2/team/app/blobs/\(small.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            // Indexed (the client has its bytes before the commit): from then on it is a hit.
            await eventually("the small layer was not indexed") { wharf.isIndexed(small.digest) }
            let hitsBefore = wharf.mirror.stats.blobHits.value
            let pipelined = [
                "GET /v2/team/app/blobs/\(big.digest) HTTP/1.1\r\nHost: w\r\n\r\n",  // miss: async side, slow
                "GET /v2/team/app/blobs/\(small.digest) HTTP/1.1\r\nHost: w\r\n\r\n",  // hit, queued behind it
                "GET /v2/team/app/manifests/\(image.manifest.digest) HTTP/1.1\r\nHost: w\r\n\r\n",
                "HEAD /v2/team/app/blobs/\(small.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n",
            ].joined()
            let raw = try await RawHTTP.request(pipelined, port: wharf.port, untilClose: true).raw
            let responses = Self.split(raw, headResponses: [3])
            #expect(responses.count == 4, "got \(responses.count) responses")
            if responses.count == 4 {
                #expect(responses[0].status == 200 && Digest.sha256(of: responses[0].body).description == big.digest)
                #expect(responses[1].status == 200 && Digest.sha256(of: responses[1].body).description == small.digest)
                #expect(responses[2].status == 200 && Digest.sha256(of: responses[2].body).description == image.manifest.digest)
                #expect(responses[3].status == 200 && responses[3].headers.lowercased().contains("content-length: \(small.size)"))
            }
            #expect(wharf.mirror.stats.blobHits.value >= hitsBefore + 2)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }

    @Test("hits alone: a sendfile blob, an inline small blob, a 304 manifest by tag and a HEAD, pipelined, with full headers")
    func hitsPipelined() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [300_000, 20_000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            let big = image.layers[0], small = image.layers[1]
            _ = try await RawHTTP.request("GET /v2/team/app/manifests/v1 HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            for layer in [big, small] {
                _ = try await RawHTTP.request("GET /v2/team/app/blobs/\(layer.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            }
            let indexed = { [big, small].allSatisfy { wharf.isIndexed($0.digest) } }
            await eventually("the layers were not indexed") { indexed() }
            let hitsBefore = (wharf.mirror.stats.blobHits.value, wharf.mirror.stats.manifestHits.value)
            let missesBefore = wharf.mirror.stats.blobMisses.value
            let manifestDigest = image.manifest.digest
            let ns = String(upstream.registry.url.dropFirst("http://".count))  // an upstream's own host is always its namespace
            let pipelined = [
                "GET /v2/team/app/blobs/\(big.digest) HTTP/1.1\r\nHost: w\r\n\r\n",
                "GET /v2/team/app/blobs/\(small.digest)?ns=\(ns) HTTP/1.1\r\nHost: w\r\n\r\n",
                "GET /v2/team/app/manifests/v1 HTTP/1.1\r\nHost: w\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\nIf-None-Match: \"\(manifestDigest)\"\r\n\r\n",
                "HEAD /v2/team/app/blobs/\(big.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n",
            ].joined()
            let raw = try await RawHTTP.request(pipelined, port: wharf.port, untilClose: true).raw
            let responses = Self.split(raw, headResponses: [2, 3])
            #expect(responses.count == 4, "got \(responses.count) responses")
            if responses.count == 4 {
                for (response, blob) in [(responses[0], big), (responses[1], small)] {
                    #expect(response.status == 200 && Digest.sha256(of: response.body).description == blob.digest)
                    let h = response.headers
                    #expect(h.contains("Content-Type: application/octet-stream\r\n"))
                    #expect(h.contains("Content-Length: \(blob.size)\r\n"))
                    #expect(h.contains("Docker-Content-Digest: \(blob.digest)\r\n"))
                    #expect(h.contains("ETag: \"\(blob.digest)\"\r\n"))
                    #expect(h.contains("Docker-Distribution-API-Version: registry/2.0\r\n"))
                    #expect(!h.contains("Connection: close"))
                }
                #expect(responses[1].headers.contains("OCI-Namespace: \(ns)\r\n"))
                #expect(responses[2].status == 304 && responses[2].headers.contains("Docker-Content-Digest: \(manifestDigest)\r\n"))
                #expect(responses[3].status == 200 && responses[3].body.isEmpty)
                #expect(responses[3].headers.contains("Content-Length: \(big.size)\r\n") && responses[3].headers.contains("Connection: close\r\n"))
            }
            #expect(wharf.mirror.stats.blobHits.value == hitsBefore.0 + 3)
            #expect(wharf.mirror.stats.manifestHits.value == hitsBefore.1 + 1)
            #expect(wharf.mirror.stats.blobMisses.value == missesBefore)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }

    @Test("a small blob kept in memory answers keep-alive GETs with the file's bytes; close, namespaced and HEAD requests keep their own heads")
    func memoryKeptResponses() async throws {
        var image: GeneratedImage!
        try await withWharf(seed: { upstream in
            image = try upstream.generator.image(layerSizes: [20_000], format: .oci)
            try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        }) { f in
            let wharf = f.wharf, small = image.layers[0]
            try await wharf.cache([small], of: "team/app")
            #expect(wharf.server.memoryCacheUsage.entries == 0, "a Connection: close answer is not the one kept")
            let ns = String(f.upstream.registry.url.dropFirst("http://".count))
            let get = "GET /v2/team/app/blobs/\(small.digest) HTTP/1.1\r\nHost: w\r\n\r\n"
            let pipelined = [
                get,  // read from the file, then kept
                get,  // from memory
                "GET /v2/team/app/blobs/\(small.digest)?ns=\(ns) HTTP/1.1\r\nHost: w\r\n\r\n",
                get,
                "HEAD /v2/team/app/blobs/\(small.digest) HTTP/1.1\r\nHost: w\r\n\r\n",
                "GET /v2/team/app/blobs/\(small.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n",
            ].joined()
            let raw = try await RawHTTP.request(pipelined, port: wharf.port, untilClose: true).raw
            let responses = Self.split(raw, headResponses: [4])
            #expect(responses.count == 6, "got \(responses.count) responses")
            if responses.count == 6 {
                for i in [0, 1, 2, 3, 5] {
                    #expect(responses[i].status == 200 && Digest.sha256(of: responses[i].body).description == small.digest, "response \(i)")
                    #expect(responses[i].headers.contains("Content-Length: \(small.size)\r\n"))
                }
                #expect(responses[0].headers == responses[1].headers && responses[1].headers == responses[3].headers)
                for i in [0, 1, 3, 4] { #expect(!responses[i].headers.contains("OCI-Namespace") && !responses[i].headers.contains("Connection: close")) }
                #expect(responses[2].headers.contains("OCI-Namespace: \(ns)\r\n"))
                #expect(responses[4].status == 200 && responses[4].body.isEmpty && responses[4].headers.contains("Content-Length: \(small.size)\r\n"))
                #expect(responses[5].headers.contains("Connection: close\r\n") && !responses[5].headers.contains("OCI-Namespace"))
            }
            let usage = wharf.server.memoryCacheUsage
            #expect(usage.entries == 1 && usage.bytes >= small.size, "memory: \(usage)")
            #expect(wharf.mirror.stats.memoryHits.value == 2, "the second and fourth GET come from memory")

            // Evicting the blob (a purge) drops the kept response with its file: the next GET is not a hit.
            #expect(wharf.mirror.store.remove(try Digest(parsing: small.digest)))
            _ = try await RawHTTP.request("GET /v2/team/app/blobs/\(small.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(wharf.server.memoryCacheUsage.entries == 0)
        }
    }

    /// Splits pipelined responses; those at `headResponses` (answers to HEAD, or 304) have no body.
    static func split(_ raw: [UInt8], headResponses: Set<Int>) -> [(status: Int, body: [UInt8], headers: String)] {
        self.splitCounting(raw, headResponses: headResponses).responses
    }

    /// ``split(_:headResponses:)``, and how many bytes the whole responses take (the rest is a partial one).
    static func splitCounting(_ raw: [UInt8], headResponses: Set<Int>) -> (responses: [(status: Int, body: [UInt8], headers: String)], used: Int) {
        var rest = raw[...]
        var responses: [(status: Int, body: [UInt8], headers: String)] = []
        while let end = rest.firstRange(of: [13, 10, 13, 10]) {
            let head = String(decoding: rest[rest.startIndex..<end.upperBound], as: UTF8.self)
            let status = Int(head.split(separator: " ")[1]) ?? 0
            let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            let bodyEnd = end.upperBound + (headResponses.contains(responses.count) ? 0 : length)
            guard bodyEnd <= rest.endIndex else { break }
            responses.append((status, Array(rest[end.upperBound..<bodyEnd]), head))
            rest = rest[bodyEnd...]
        }
        return (responses, rest.startIndex)
    }
}
