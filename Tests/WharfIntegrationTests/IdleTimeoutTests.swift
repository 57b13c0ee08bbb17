import Foundation
import NIOCore
import OCIDistribution
import Testing
import WharfMirror
import WharfStorage
import WharfTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The idle timeout closes connections that make no progress, and only those: a big blob still
/// draining to a slow reader is progress, whichever path (event-loop hit or async) sent it.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct IdleTimeoutTests {
    static let idle = 1.0  // seconds

    @Test("a slow reader gets a whole big blob that takes several idle periods, as a hit and as a range")
    func slowReaderIsNotIdle() async throws {
        try await Self.withCachedBigLayer { wharf, layer in
            let hitsBefore = wharf.mirror.stats.blobHits.value
            for extra in ["", "Range: bytes=0-\r\n"] {
                let request = "GET /v2/team/big/blobs/\(layer.digest) HTTP/1.1\r\nHost: w\r\n\(extra)\r\n"
                let slow = try await SlowReader.fetch(request, port: wharf.port, bytesPerTick: 32 << 10, tick: .milliseconds(10), stallFor: nil)
                let response = try #require(RawHTTP.parse(slow.bytes))
                #expect(response.status == (extra.isEmpty ? 200 : 206))
                #expect(response.body.count == layer.size, "\(extra.isEmpty ? "hit" : "range"): \(response.body.count) of \(layer.size) bytes")
                #expect(Digest.sha256(of: response.body).description == layer.digest)
                #expect(slow.seconds > 2 * Self.idle, "the transfer should outlast the idle period: \(slow.seconds) s")
            }
            #expect(wharf.mirror.stats.blobHits.value >= hitsBefore + 1)
        }
    }

    @Test("a reader that stops reading, and a connection that never sends a request, are closed after the idle period")
    func stalledAndSilentConnectionsClose() async throws {
        try await Self.withCachedBigLayer { wharf, layer in
            let request = "GET /v2/team/big/blobs/\(layer.digest) HTTP/1.1\r\nHost: w\r\n\r\n"
            let stalled = try await SlowReader.fetch(request, port: wharf.port, bytesPerTick: 1 << 20, tick: .milliseconds(1), stallFor: .seconds(4))
            #expect(stalled.closedByServer, "the server should have closed the stalled connection")
            #expect(stalled.bytes.count < layer.size, "a stalled reader cannot have received the whole blob: \(stalled.bytes.count)")
            let silent = try await SlowReader.fetch("", port: wharf.port, bytesPerTick: 1 << 16, tick: .milliseconds(1), stallFor: nil)
            #expect(silent.closedByServer && silent.bytes.isEmpty)
            #expect(silent.seconds >= 0.9 * Self.idle && silent.seconds < 3 * Self.idle, "closed after \(silent.seconds) s")
        }
    }

    /// Runs `body` against a Wharf with a 1 s idle period that has the 16 MiB layer of `team/big:v1` cached.
    static func withCachedBigLayer(_ body: (WharfInstance, GeneratedBlob) async throws -> Void) async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [16 << 20], format: .oci)
        try upstream.storage.add(image: image, repository: "team/big", tag: "v1")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url, idleTimeout: .seconds(Int64(Self.idle)))
        do {
            try await wharf.cache(image.layers, of: "team/big")
            try await body(wharf, image.layers[0])
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }
}

/// A raw-socket client with a small receive buffer that reads at a set pace, optionally after a stall.
enum SlowReader {
    struct Result {
        let bytes: [UInt8]
        let seconds: Double
        /// The connection ended with EOF or a reset (rather than the 20 s read timeout).
        let closedByServer: Bool
    }

    /// Sends `request`, waits `stallFor` without reading, then reads `bytesPerTick` per `tick` until
    /// the response is complete or the connection ends.
    static func fetch(_ request: String, port: Int, bytesPerTick: Int, tick: Duration, stallFor: Duration?) async throws -> Result {
        let bytes = Array(request.utf8)
        return try await RawHTTP.onOwnThread { try Self.blockingFetch(bytes, port: port, bytesPerTick: bytesPerTick, tick: tick, stallFor: stallFor) }
    }

    private static func blockingFetch(_ request: [UInt8], port: Int, bytesPerTick: Int, tick: Duration, stallFor: Duration?) throws -> Result {
        let fd = try RawHTTP.connect(port: port, receiveBuffer: 64 << 10)
        defer { close(fd) }
        let started = Date()
        if !request.isEmpty {
            _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        if let stallFor { Thread.sleep(forTimeInterval: Self.seconds(stallFor)) }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: bytesPerTick)
        var closed = false
        var expected: Int?  // head + body bytes, once the head is in
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 || (n < 0 && errno == ECONNRESET) {
                closed = true
                break
            }
            if n < 0 { break }
            received.append(contentsOf: chunk[0..<n])
            if expected == nil, let end = received.firstRange(of: [13, 10, 13, 10]), let head = RawHTTP.parse(Array(received[..<end.upperBound])) {
                expected = end.upperBound + (head.declaredLength ?? 0)
            }
            if let expected, received.count >= expected { break }
            Thread.sleep(forTimeInterval: Self.seconds(tick))
        }
        return Result(bytes: received, seconds: Date().timeIntervalSince(started), closedByServer: closed)
    }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
