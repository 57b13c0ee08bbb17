import Foundation
import OCIDistribution
import Testing
import WharfMirror
import WharfTestSupport

/// A cache that cannot keep a blob (its disk is full) still gives the client correct bytes, streamed
/// from the upstream uncached and verified, and never a `200` with a short body; it leaves no temp
/// files behind (issue #12, "disk full"). The data folder is a 4 MiB tmpfs.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration, .needsRoot))
struct DiskFullTests {
    @Test("a blob bigger than the free space is relayed whole, uncached; one that fits is cached; no temp debris")
    func diskFull() async throws {
        let mountPoint = try TempDirectory.make("tmpfs")
        let mounted = try await CommandRunner.run(
            executable: "/bin/mount", arguments: ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mountPoint], timeout: .seconds(10))
        try #require(mounted.status == 0, "mount tmpfs (needs root): \(mounted.output)")
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [6 << 20, 300_000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/big", tag: "v1")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url, dataDirectory: mountPoint + "/data")
        do {
            let big = image.layers[0], small = image.layers[1]
            #expect(try await RawHTTP.request("GET /v2/team/big/manifests/v1 HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port).status == 200)
            for round in 0..<2 {
                let r = try await RawHTTP.request("GET /v2/team/big/blobs/\(big.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
                #expect(r.status == 200 && r.body.count == big.size, "round \(round): \(r.status), \(r.body.count) of \(big.size) bytes")
                #expect(Digest.sha256(of: r.body).description == big.digest)
            }
            #expect(wharf.mirror.stats.relays.value == 2)
            #expect(!wharf.cachedBlobHexes().contains(big.hex))
            let fits = try await RawHTTP.request("GET /v2/team/big/blobs/\(small.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(fits.status == 200 && Digest.sha256(of: fits.body).description == small.digest)
            await eventually { wharf.cachedBlobHexes().contains(small.hex) }
            #expect(wharf.tempFiles().isEmpty, "temp debris: \(wharf.tempFiles())")

            // The upstream gone too: an answer before any head, never a 200 with a short body.
            try await upstream.registry.stop()
            let gone = try await RawHTTP.request("GET /v2/team/big/blobs/\(big.digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(gone.status >= 400 && gone.bodyText.contains("errors"), "\(gone.status)")
            #expect(wharf.tempFiles().isEmpty)
        } catch {
            Issue.record(error)
        }
        await wharf.stop(removeData: false)
        await upstream.stop()
        _ = try? await CommandRunner.run(executable: "/bin/umount", arguments: ["-l", mountPoint], timeout: .seconds(10))  // lazy: the index may still be mapped
        try? FileManager.default.removeItem(atPath: mountPoint)
    }
}
