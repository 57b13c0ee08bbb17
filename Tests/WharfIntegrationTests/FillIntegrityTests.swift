import NIOHTTP1
import OCIDistribution
import Synchronization
import WharfMirror
import WharfStorage
import WharfUpstream
import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import WharfTestSupport

/// Corrupt, truncated and failing upstream bodies never reach a client as complete and never land in the cache;
/// concurrent misses share one upstream GET.
@Suite(.serialized, .timeLimit(.minutes(10)), .tags(.integration, .realClients))
struct FillIntegrityTests {
    @Test("tampered upstream bodies fail the pull, are not cached, and a clean retry succeeds",
          arguments: [TamperMode.flipByte, .truncate, .shortBody, .error500, .resetMidStream])
    func tampering(mode: TamperMode) async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [3_000_000], format: .dockerSchema2)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try await upstream.start()
        let proxy = TamperingProxy(upstream: upstream.registry.url)
        try await proxy.start()
        let wharf = try await WharfInstance.start(upstream: proxy.url)
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let layer = image.layers[0]
            proxy.setMode(mode)
            // A raw GET: the response must not be a complete, correct-length body.
            let raw = try await RawHTTP.request("GET /v2/team/app/blobs/\(layer.digest) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: wharf.port)
            let complete = raw.status == 200 && raw.body.count == layer.size && raw.declaredLength == layer.size
            #expect(!complete, "a tampered body (\(mode)) reached the client as complete")
            if raw.status != 200 { #expect(raw.status == 404 && raw.bodyText.contains("BLOB_UNKNOWN")) }

            let out = try TempDirectory.make("skopeo-tamper")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let failed = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app:v1", destinationDirectory: out + "/bad", extraArguments: [], timeout: .seconds(120))
            #expect(failed.status != 0, "skopeo accepted a tampered blob (\(mode))")
            try await Task.sleep(for: .milliseconds(200))
            #expect(!wharf.cachedBlobHexes().contains(layer.hex), "tampered blob landed in the cache")
            #expect(try wharf.mirror.index.blob(.init(parsing: layer.digest)) == nil)
            #expect(wharf.tempFiles().isEmpty, "temp files left: \(wharf.tempFiles())")

            proxy.setMode(.passthrough)
            let ok = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app:v1", destinationDirectory: out + "/good", extraArguments: [], timeout: .seconds(120))
            #expect(ok.status == 0, "clean pull failed: \(ok.output)")
            #expect(try SkopeoDir.verify(directory: out + "/good", expected: image.blobs) == [])
            #expect(wharf.cachedBlobHexes().contains(layer.hex))
        } catch {
            Issue.record(error)
        }
        try? await client.shutdown()
        await wharf.stop()
        try? await proxy.stop()
        await upstream.stop()
    }

    @Test("32 concurrent cold GETs of one large blob make exactly one upstream GET")
    func herd() async throws {
        let upstream = try UpstreamEnvironment()
        let big = try upstream.generator.rawBlob(size: 64 << 20)
        try upstream.storage.addBlob(big, repository: "team/big")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        // One connection per GET, so all 32 really are concurrent. With the client's
        // default of 8 connections per host, 24 GETs queue in the client and give up
        // after its 10 s connect timeout when a loaded machine serves the first 8 slowly.
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 32
        configuration.timeout.connect = .seconds(60)
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            let started = ContinuousClock.now
            let hashes = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for _ in 0..<32 {
                    group.addTask {
                        let r = try await client.execute(HTTPClientRequest(url: "\(wharf.url)/v2/team/big/blobs/\(big.digest)"), timeout: .seconds(120))
                        var h = StreamingSHA256()
                        for try await chunk in r.body { h.update(chunk) }
                        return (Int(r.status.code), h.finalize())
                    }
                }
                var all: [(Int, String)] = []
                for try await x in group { all.append(x) }
                return all
            }
            let elapsed = ContinuousClock.now - started
            #expect(hashes.count == 32)
            for (status, hex) in hashes {
                #expect(status == 200)
                #expect(hex == big.hex)
            }
            let gets = try upstream.registry.accessLog().filter { $0.method == "GET" && $0.path.contains(big.digest) }.count
            #expect(gets == 1, "upstream saw \(gets) GETs for the blob")
            print("herd: 32 clients × 64 MiB, upstream GETs \(gets), total \(elapsed), followers joined \(wharf.mirror.stats.followersJoined.value)")
        } catch {
            Issue.record(error)
        }
        try? await client.shutdown()
        await wharf.stop()
        await upstream.stop()
    }

    @Test("a client that disconnects does not cancel the fill")
    func disconnectKeepsFill() async throws {
        let upstream = try UpstreamEnvironment()
        let big = try upstream.generator.rawBlob(size: 32 << 20)
        try upstream.storage.addBlob(big, repository: "team/big")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            // Read only the head and a little body, then hang up.
            _ = try await RawHTTP.request("GET /v2/team/big/blobs/\(big.digest) HTTP/1.1\r\nHost: x\r\n\r\n", port: wharf.port, maxBytes: 4096)
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline, !wharf.cachedBlobHexes().contains(big.hex) { try await Task.sleep(for: .milliseconds(100)) }
            #expect(wharf.cachedBlobHexes().contains(big.hex), "fill did not complete after the client left")
            #expect(try Hashing.sha256Hex(file: wharf.dataDirectory + "/blobs/sha256/\(big.hex.prefix(2))/\(big.hex)") == big.hex)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }
}
