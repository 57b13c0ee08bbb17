import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution
import Testing
import WharfMirror
import WharfTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Issue #12, bug 5: a fill whose clients are all gone kept its upstream connection for hours (63
/// orphaned slow fills held 64 pooled connections). Now a fill nobody follows is stopped once it
/// falls below a throughput floor; one with a reader runs to the end however slow.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct OrphanFillTests {
    @Test("a slow fill its client walked away from is stopped; a slow fill with a reader completes")
    func orphanedSlowFillsStop() async throws {
        let upstream = HostileUpstream()
        let big = (0..<200_000).map { _ in UInt8.random(in: 0...255) }, small = (0..<30).map { _ in UInt8.random(in: 0...255) }
        let bigDigest = Digest.sha256(of: big), smallDigest = Digest.sha256(of: small)
        upstream.script("/v2/team/slow/blobs/\(bigDigest)", .dribble(LoopbackHTTPResponse(status: .ok, body: ByteBuffer(bytes: big)), every: .milliseconds(1)))
        // 30 bytes, one every 100 ms: 3 s, three times the grace, far below the floor, in few enough
        // steps that a loaded machine (whose 1 ms sleeps take tens of ms) stretches it by little.
        upstream.script("/v2/team/slow/blobs/\(smallDigest)", .dribble(LoopbackHTTPResponse(status: .ok, body: ByteBuffer(bytes: small)), every: .milliseconds(100)))
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.url)
        wharf.mirror.fills.setOrphanPolicy(BlobFill.OrphanPolicy(grace: .seconds(1), floorBytesPerSecond: 1 << 20))
        do {
            // Read the head and a few bytes, then leave.
            let started = ContinuousClock.now
            try await RawHTTP.onOwnThread {
                let fd = try RawHTTP.connect(port: wharf.port)
                defer { close(fd) }
                let request = Array("GET /v2/team/slow/blobs/\(bigDigest) HTTP/1.1\r\nHost: w\r\n\r\n".utf8)
                _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                var buffer = [UInt8](repeating: 0, count: 1024)
                _ = recv(fd, &buffer, buffer.count, 0)
            }
            await eventually(within: .seconds(10), "the orphaned fill is still running") { wharf.mirror.fills.inFlight == 0 }
            let elapsed = ContinuousClock.now - started
            #expect(elapsed < .seconds(6), "stopped after \(elapsed)")
            #expect(wharf.mirror.stats.fillsAbandoned.value == 1)
            #expect(!wharf.cachedBlobHexes().contains(bigDigest.hex) && wharf.tempFiles().isEmpty)

            // The same slowness with a client reading: not stopped.
            let r = try await RawHTTP.request("GET /v2/team/slow/blobs/\(smallDigest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(r.status == 200 && Digest.sha256(of: r.body) == smallDigest)
            await eventually(within: .seconds(10)) { wharf.cachedBlobHexes().contains(smallDigest.hex) }
            #expect(wharf.mirror.stats.fillsAbandoned.value == 1)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }

    /// The CI failure of stop 22: a client was attached to its fill only once its request reached the
    /// follow loop, after any confirmation upstream; a fill could be stopped as abandoned while its
    /// client was still on the way. Now whoever finds or starts a fill follows it at once.
    @Test("a client joining a fill through another repository follows it while its upstream confirmation is slow")
    func joinerFollowsDuringConfirmation() async throws {
        let upstream = HostileUpstream()
        // 60 bytes, one every 100 ms: 6 s, three times the grace.
        let blob = (0..<60).map { _ in UInt8.random(in: 0...255) }
        let digest = Digest.sha256(of: blob)
        upstream.script("/v2/team/slow/blobs/\(digest)", .dribble(LoopbackHTTPResponse(status: .ok, body: ByteBuffer(bytes: blob)), every: .milliseconds(100)))
        // The confirmation for the second repository takes twice the grace.
        upstream.script("/v2/team/other/blobs/\(digest)", .late(LoopbackHTTPResponse(status: .ok, headers: ["Content-Length": "\(blob.count)"]), after: .seconds(4)))
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.url)
        wharf.mirror.fills.setOrphanPolicy(BlobFill.OrphanPolicy(grace: .seconds(2), floorBytesPerSecond: 1 << 20))
        do {
            // A fill through team/slow whose starter lets go at once (as a client that left would).
            guard case .fill(let starter) = try wharf.mirror.fills.source(for: digest, upstream: wharf.mirror.upstreamChain, repository: "team/slow") else {
                throw FixtureError.invalid("the blob was already cached")
            }
            starter.release()
            let r = try await RawHTTP.request("GET /v2/team/other/blobs/\(digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(r.status == 200 && Digest.sha256(of: r.body) == digest, "status \(r.status), \(r.body.count) bytes")
            #expect(wharf.mirror.stats.fillsAbandoned.value == 0)
            #expect(upstream.count(pathPrefix: "/v2/team/slow/blobs/") == 1)
            await eventually(within: .seconds(10)) { wharf.cachedBlobHexes().contains(digest.hex) }
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }
}
