import Foundation
import OCIDistribution
import Testing
import WharfMirror
import WharfTestSupport

/// Hits answered on the event loop (`HitPath`) and requests left to the async handler share a
/// connection: pipelined requests must still be answered in order, each with its own bytes.
@Suite(.serialized, .timeLimit(.minutes(5)))
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
            for _ in 0..<200 where !wharf.cachedBlobHexes().contains(String(small.digest.dropFirst(7))) { try await Task.sleep(for: .milliseconds(10)) }
            let hitsBefore = wharf.mirror.stats.blobHits.value
            let pipelined = [
                "GET /v2/team/app/blobs/\(big.digest) HTTP/1.1\r\nHost: w\r\n\r\n",  // miss: async side, slow
                "GET /v2/team/app/blobs/\(small.digest) HTTP/1.1\r\nHost: w\r\n\r\n",  // hit, queued behind it
                "GET /v2/team/app/manifests/\(image.manifest.digest) HTTP/1.1\r\nHost: w\r\n\r\n",
                "HEAD /v2/team/app/blobs/\(small.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n",
            ].joined()
            let raw = try await RawHTTP.request(pipelined, port: wharf.port, untilClose: true).raw
            var rest = raw[...]
            var responses: [(status: Int, body: [UInt8], headers: String)] = []
            while let end = rest.firstRange(of: [13, 10, 13, 10]) {
                let head = String(decoding: rest[rest.startIndex..<end.lowerBound], as: UTF8.self)
                let status = Int(head.split(separator: " ")[1]) ?? 0
                let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                let isHeadResponse = responses.count == 3
                let bodyEnd = end.upperBound + (isHeadResponse ? 0 : length)
                guard bodyEnd <= rest.endIndex else { break }
                responses.append((status, Array(rest[end.upperBound..<bodyEnd]), head))
                rest = rest[bodyEnd...]
            }
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
}
