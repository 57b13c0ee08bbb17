import Foundation
import OCIDistribution
import Testing
import WharfTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// SIGTERM is a graceful shutdown on both request paths: a response in flight finishes, new
/// connections are refused, and the process exits 0.
@Suite(.serialized, .timeLimit(.minutes(4)), .tags(.integration))
struct GracefulShutdownTests {
    /// Reads one response on a blocking socket, hashing its body as it streams (512 MiB never sits in memory).
    final class StreamingResponse {
        let fd: Int32
        private(set) var head = ""
        private(set) var bodyBytes = 0
        private var hasher = StreamingSHA256()

        init(_ request: String, port: Int) throws {
            self.fd = try RawHTTP.connect(port: port, receiveBuffer: 256 << 10)
            let bytes = Array(request.utf8)
            _ = bytes.withUnsafeBytes { send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }

        deinit { close(self.fd) }

        /// Reads until `limit` body bytes have arrived in total, or the connection ends.
        func read(bodyUpTo limit: Int) {
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while self.bodyBytes < limit {
                let n = buffer.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
                guard n > 0 else { return }
                var chunk = buffer[..<n]
                if self.head.isEmpty || !self.head.hasSuffix("\r\n\r\n") {
                    // The head arrives first; the rest of the chunk is body.
                    let text = Array(self.head.utf8) + chunk
                    guard let end = text.firstRange(of: [13, 10, 13, 10]) else {
                        self.head = String(decoding: text, as: UTF8.self)
                        continue
                    }
                    self.head = String(decoding: text[..<end.upperBound], as: UTF8.self)
                    chunk = ArraySlice(text[end.upperBound...])
                }
                chunk.withUnsafeBytes { self.hasher.update($0) }
                self.bodyBytes += chunk.count
            }
        }

        func digest() -> String { "sha256:" + self.hasher.finalize() }
    }

    /// Whether a new connection to `port` is refused (the listener is closed).
    static func refusesConnections(_ port: Int) -> Bool {
        guard let fd = try? RawHTTP.connect(port: port) else { return true }
        close(fd)
        return false
    }

    @Test("SIGTERM while a 512 MiB cache hit is being sent: it arrives whole and correct, new connections are refused, wharf exits 0")
    func sigtermDuringBigHit() async throws {
        let upstream = try UpstreamEnvironment()
        let big = try upstream.generator.rawBlob(size: 512 << 20)
        try upstream.storage.addBlob(big, repository: "team/big")
        try await upstream.start()
        let sandbox = try TempDirectory.make("drain")
        let data = sandbox + "/data"  // wharf's log goes beside it, inside the sandbox
        let wharf = try await WharfProcess.start(upstream: upstream.registry.url, dataDirectory: data)
        do {
            let request = "GET /v2/team/big/blobs/\(big.digest) HTTP/1.1\r\nHost: w\r\n\r\n"
            let fill = try await RawHTTP.onOwnThread { () -> (String, Int) in
                let r = try StreamingResponse(request, port: wharf.port)
                r.read(bodyUpTo: big.size)
                return (r.digest(), r.bodyBytes)
            }
            #expect(fill == (big.digest, big.size), "the fill that caches it")
            let cached = await eventually(within: .seconds(30)) {
                let stats = try? await RawHTTP.request("GET /stats HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
                return stats.map { String(decoding: $0.body, as: UTF8.self).contains("\"completed\" : 1") } ?? false
            }
            try #require(cached, "the blob was never cached")

            // The hit: 32 MiB read, then SIGTERM while the rest is still being sent (the reader stops
            // reading until the listener is seen closed, so the sendfile is certainly in flight).
            let port = wharf.port
            let hit = try await RawHTTP.onOwnThread { () -> (head: String, digest: String, bytes: Int, refused: Bool) in
                let r = try StreamingResponse(request, port: port)
                r.read(bodyUpTo: 32 << 20)
                wharf.child.signal(SIGTERM)
                let deadline = Date().addingTimeInterval(5)
                var refused = Self.refusesConnections(port)
                while !refused, Date() < deadline {
                    usleep(10_000)
                    refused = Self.refusesConnections(port)
                }
                r.read(bodyUpTo: big.size + 1)  // to the end of the stream: nothing more may follow
                return (r.head, r.digest(), r.bodyBytes, refused)
            }
            #expect(hit.head.hasPrefix("HTTP/1.1 200") && hit.head.lowercased().contains("content-length: \(big.size)"), "\(hit.head)")
            #expect(hit.bytes == big.size, "\(hit.bytes) of \(big.size) bytes")
            #expect(hit.digest == big.digest)
            #expect(hit.refused, "the listener closed when SIGTERM came")
            let status = try await wharf.child.waitForExit(timeout: .seconds(20))
            #expect(status == 0, "graceful exit: \(wharf.child.output().suffix(2000))")
        } catch {
            Issue.record(error)
            await wharf.stop()
        }
        try? FileManager.default.removeItem(atPath: sandbox)
        await upstream.stop()
    }
}
