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
        let big = (0..<200_000).map { _ in UInt8.random(in: 0...255) }, small = (0..<300).map { _ in UInt8.random(in: 0...255) }
        let bigDigest = Digest.sha256(of: big), smallDigest = Digest.sha256(of: small)
        upstream.script("/v2/team/slow/blobs/\(bigDigest)", .dribble(LoopbackHTTPResponse(status: .ok, body: ByteBuffer(bytes: big)), every: .milliseconds(1)))
        upstream.script("/v2/team/slow/blobs/\(smallDigest)", .dribble(LoopbackHTTPResponse(status: .ok, body: ByteBuffer(bytes: small)), every: .milliseconds(1)))
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
}
