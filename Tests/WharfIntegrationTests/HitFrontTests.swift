import Foundation
import OCIDistribution
import Testing
import WharfMirror
import WharfStorage
import WharfTestSupport
@testable import WharfHTTP
#if canImport(Glibc)
import Glibc
#endif

/// The byte-level front of the hit path: `HitRequestScanner` takes only plain bodyless GET/HEAD
/// heads; everything else goes to NIO's decoder, and the answers still come back in order.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct HitFrontTests {
    static func scan(_ text: String, max: Int = 16 << 10) -> HitRequestScanner.Scan {
        Array(text.utf8).withUnsafeBytes { HitRequestScanner.scan($0, maxHeadBytes: max) }
    }

    static func request(_ text: String) -> (HitRequest, Int)? {
        if case .request(let r, let length) = self.scan(text) { return (r, length) }
        return nil
    }

    static func isOther(_ text: String, max: Int = 16 << 10) -> Bool {
        if case .other = self.scan(text, max: max) { return true }
        return false
    }

    static func isIncomplete(_ text: String) -> Bool {
        if case .incomplete = self.scan(text) { return true }
        return false
    }

    @Test("plain GET and HEAD heads are taken, with keep-alive, Accept, If-None-Match and the async-only headers")
    func takes() throws {
        let head = "GET /v2/a/b/manifests/v1?ns=docker.io HTTP/1.1\r\nHost: x\r\nACCEPT: application/json ,  */*\r\naccept:text/plain\r\n"
            + "If-None-Match: \"sha256:ab\"\r\nX-Other:\tvalue with spaces \r\n\r\n"
        let (r, length) = try #require(Self.request(head + "GET /next"))
        #expect(length == head.utf8.count)
        #expect(!r.isHead && r.uri == "/v2/a/b/manifests/v1?ns=docker.io" && r.keepAlive && !r.needsAsync)
        #expect(r.accept == ["application/json ,  */*", "text/plain"])
        #expect(r.ifNoneMatch == ["\"sha256:ab\""])

        let (h, _) = try #require(Self.request("HEAD /v2/x/blobs/sha256:00 HTTP/1.1\r\nConnection: keep-alive , CLOSE \r\n\r\n"))
        #expect(h.isHead && !h.keepAlive)
        #expect(try #require(Self.request("GET / HTTP/1.1\r\nRange: bytes=0-1\r\n\r\n")).0.needsAsync)
        #expect(try #require(Self.request("GET / HTTP/1.1\r\nauthorization: Basic eA==\r\n\r\n")).0.needsAsync)
        #expect(try #require(Self.request("GET / HTTP/1.1\r\n\r\n")).1 == 18)

        // A head arriving in pieces: each piece is incomplete, and the search for the end resumes where it stopped.
        let bytes = Array(head.utf8)
        for k in 1..<bytes.count {
            let partial = bytes[..<k].withUnsafeBytes { HitRequestScanner.scan($0, maxHeadBytes: 16 << 10) }
            guard case .incomplete = partial else { Issue.record("prefix of \(k) bytes was not incomplete"); continue }
            let whole = bytes.withUnsafeBytes { HitRequestScanner.scan($0, maxHeadBytes: 16 << 10, searchedTo: k) }
            guard case .request(_, let n) = whole, n == bytes.count else { Issue.record("resumed at \(k): not the whole head"); continue }
        }
    }

    @Test("partial heads wait; everything unusual goes to the decoder")
    func declines() {
        #expect(Self.isIncomplete(""))
        #expect(Self.isIncomplete("GE"))
        #expect(Self.isIncomplete("HEAD /v2/ HTTP/1.1\r\nHost: x\r\n"))
        #expect(Self.isIncomplete("GET /v2/ HTTP/1.1\r\n\r"))
        for other in [
            "\u{16}\u{03}\u{01}\u{02}\u{00}\u{01}",  // a TLS ClientHello sent to the plain port
            "POST /v2/ HTTP/1.1\r\n\r\n",
            "get /v2/ HTTP/1.1\r\n\r\n",
            "GET /v2/ HTTP/1.0\r\n\r\n",
            "GET v2/ HTTP/1.1\r\n\r\n",
            "GET  /v2/ HTTP/1.1\r\n\r\n",
            "GET /v2/\u{7F} HTTP/1.1\r\n\r\n",
            "GET /v2/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /v2/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /v2/ HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /v2/ HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            "GET /v2/ HTTP/1.1\r\nConnection: Upgrade\r\n\r\n",
            "GET /v2/ HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            "GET /v2/ HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET /v2/ HTTP/1.1\r\n: empty\r\n\r\n",
            "GET /v2/ HTTP/1.1\r\nHost: a\u{01}b\r\n\r\n",
            "GET /v2/ HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
            "GET /v2/ HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
        ] {
            #expect(Self.isOther(other), "should go to the decoder: \(other.debugDescription)")
        }
        let many = "GET / HTTP/1.1\r\n" + String(repeating: "X: y\r\n", count: 257) + "\r\n"
        #expect(Self.isOther(many))
        #expect(Self.isOther("GET /" + String(repeating: "a", count: 200) + " HTTP/1.1\r\n", max: 100))
    }

    @Test("hits, misses and decoder-bound requests pipelined byte by byte come back in order, then a TLS hello is refused at once")
    func pipelinedByteByByte() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [30_000, 200_000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            let small = image.layers[0], big = image.layers[1]
            try await wharf.cache([small], of: "team/app")
            let hitsBefore = wharf.mirror.stats.blobHits.value
            let pipelined = [
                "GET /v2/team/app/blobs/\(small.digest) HTTP/1.1\r\nHost: w\r\n\r\n",  // hit, front
                "GET /v2/team/app/blobs/\(big.digest) HTTP/1.1\r\nHost: w\r\n\r\n",  // miss: async
                "GET /v2/team/app/blobs/\(small.digest) HTTP/1.1\r\nHost: w\r\n\r\n",  // hit, behind the miss
                "GET /v2/team/app/blobs/\(small.digest) HTTP/1.1\r\nHost: w\r\nRange: bytes=0-9\r\n\r\n",  // async-only header
                "HEAD /v2/team/app/blobs/\(small.digest) HTTP/1.1\r\nHost: w\r\n\r\n",
                // HTTP/1.0: the decoder has the rest of the connection; no keep-alive, so the server closes after it
                "GET /v2/team/app/blobs/\(small.digest) HTTP/1.0\r\nHost: w\r\n\r\n",
            ].joined()
            let raw = try await Self.sendByteByByte(pipelined, port: wharf.port)
            let responses = HitPathTests.split(raw, headResponses: [4])
            #expect(responses.count == 6, "got \(responses.count) responses in \(raw.count) bytes: \(responses.map(\.headers))")
            if responses.count == 6 {
                let digest = { (i: Int) in Digest.sha256(of: responses[i].body).description }
                #expect(responses[0].status == 200 && digest(0) == small.digest)
                #expect(responses[1].status == 200 && digest(1) == big.digest)
                #expect(responses[2].status == 200 && digest(2) == small.digest)
                #expect(responses[3].status == 206 && responses[3].body.count == 10)
                #expect(responses[4].status == 200 && responses[4].headers.lowercased().contains("content-length: \(small.size)"))
                #expect(responses[5].status == 200 && digest(5) == small.digest)
            }

            // A malformed head after a hit: the hit's answer, then the decoder's 400, in that order.
            let folded = "GET /v2/team/app/blobs/\(small.digest) HTTP/1.1\r\nHost: w\r\n\r\n"
                + "GET /v2/team/app/blobs/\(small.digest) HTTP/1.1\r\nHost: w\r\nX-Folded: a\r\n b\r\n\r\n"
            let refused = HitPathTests.split(try await Self.sendByteByByte(folded, port: wharf.port), headResponses: [])
            #expect(refused.map(\.status) == [200, 400])
            #expect(wharf.mirror.stats.blobHits.value >= hitsBefore + 2)

            // A TLS client on the plain port is told so at once, not left waiting for a head.
            let started = ContinuousClock.now
            let tls = try await RawHTTP.request("\u{16}\u{03}\u{01}\u{00}\u{a5}\u{01}\u{00}\u{00}\u{a1}\u{03}\u{03}", port: wharf.port)
            #expect(tls.status == 400)
            #expect(ContinuousClock.now - started < .seconds(2))
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }

    @Test("a connection refused mid-pipeline leaves no blob file open, whatever its queued responses were")
    func abortedPipelineClosesFiles() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [300_000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            let layer = image.layers[0]
            try await wharf.cache([layer], of: "team/app")
            // Async responses (ranges) the client never reads: the writer holds FileRegions it cannot hand on
            // to a full socket. Then the client resets the connection.
            let ranged = "GET /v2/team/app/blobs/\(layer.digest) HTTP/1.1\r\nHost: w\r\nRange: bytes=0-\r\n\r\n"
            for _ in 0..<3 {
                try await Self.requestThenReset(String(repeating: ranged, count: 64), port: wharf.port, after: .milliseconds(700))
            }
            var open: [String] = []
            for _ in 0..<100 {
                open = OpenFileCacheTests.descriptorTargets().filter { $0.hasPrefix(wharf.dataDirectory + "/blobs") }
                if open.isEmpty { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(open == [], "blob files left open after aborted connections")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }

    /// Sends `text` with a small receive buffer, reads nothing, and resets the connection after `after`.
    static func requestThenReset(_ text: String, port: Int, after: Duration) async throws {
        let bytes = Array(text.utf8)
        try await RawHTTP.onOwnThread {
            let fd = try RawHTTP.connect(port: port, receiveBuffer: 4096)
            _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            usleep(UInt32(after.components.seconds * 1_000_000 + after.components.attoseconds / 1_000_000_000_000))
            var reset = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, socklen_t(MemoryLayout<linger>.size))
            close(fd)
        }
    }

    /// Sends each byte in its own segment (TCP_NODELAY, a short pause between), then reads until close.
    static func sendByteByByte(_ text: String, port: Int) async throws -> [UInt8] {
        let bytes = Array(text.utf8)
        return try await RawHTTP.onOwnThread {
            let fd = try RawHTTP.connect(port: port, noDelay: true)
            defer { close(fd) }
            for (i, b) in bytes.enumerated() {
                var byte = b
                _ = send(fd, &byte, 1, Int32(MSG_NOSIGNAL))
                if i % 7 == 0 { usleep(200) }
            }
            var received: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                received.append(contentsOf: chunk[0..<n])
            }
            return received
        }
    }
}
