import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution
import Synchronization
import WharfHTTP
import WharfMirror
import Testing
import WharfTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A connection holds a task only while a request is with the async side: cache hits are answered
/// on the event loop without one, and a hit pipelined behind a miss waits for the miss's answer.
@Suite(.serialized, .timeLimit(.minutes(2)), .tags(.integration))
struct AsyncSideTests {
    static func path(_ digest: Digest) -> String { "/v2/team/app/blobs/\(digest)" }

    @Test("hits on a connection start no task; a miss starts one, and a hit pipelined behind it is answered after it, by a task of its own")
    func tasksOnlyForTheAsyncSide() async throws {
        let upstream = HostileUpstream()
        let cached = (0..<3000).map { _ in UInt8.random(in: 0...255) }, slow = (0..<5000).map { _ in UInt8.random(in: 0...255) }
        let cachedDigest = Digest.sha256(of: cached), slowDigest = Digest.sha256(of: slow)
        upstream.script(Self.path(cachedDigest), .respond(LoopbackHTTPResponse(status: .ok, body: ByteBuffer(bytes: cached))))
        upstream.script(Self.path(slowDigest), .stall(LoopbackHTTPResponse(status: .ok, body: ByteBuffer(bytes: slow))))
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.url)
        do {
            // A miss (the async side) caches the first blob; from then on it is a hit.
            let fill = try await RawHTTP.request("GET \(Self.path(cachedDigest)) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(fill.status == 200 && Digest.sha256(of: fill.body) == cachedDigest)
            // Indexed, not only renamed into blobs/: the client has its bytes before the commit, and
            // until the index has the blob a request for it is a miss.
            await eventually("the blob was not indexed") { wharf.isIndexed(cachedDigest.description) }
            await eventually { wharf.server.asyncSideTasks.running == 0 }
            let before = wharf.server.asyncSideTasks.started, hits = wharf.mirror.stats.blobHits.value

            let connection = try RawConnection(port: wharf.port)
            let get = "GET \(Self.path(cachedDigest)) HTTP/1.1\r\nHost: w\r\n\r\n"
            try await connection.send(get + "HEAD \(Self.path(cachedDigest)) HTTP/1.1\r\nHost: w\r\n\r\n" + get)
            let answers = try await connection.read(responses: 3, headResponses: [1])
            #expect(answers.map(\.status) == [200, 200, 200])
            #expect(answers.count == 3 && Digest.sha256(of: answers[0].body) == cachedDigest && Digest.sha256(of: answers[2].body) == cachedDigest)
            let afterHits = wharf.mirror.stats.blobHits.value
            #expect(afterHits >= hits + 2, "answered as hits")
            #expect(wharf.server.asyncSideTasks.started == before, "hits alone start no task")
            #expect(wharf.server.asyncSideTasks.running == 0)

            // A miss whose upstream stalls, and a hit behind it on the same connection.
            try await connection.send("GET \(Self.path(slowDigest)) HTTP/1.1\r\nHost: w\r\n\r\n" + get)
            await eventually("no task for the miss") { wharf.server.asyncSideTasks.running == 1 }
            await eventually("the upstream was not asked") { upstream.count(pathPrefix: Self.path(slowDigest)) == 1 }
            #expect(wharf.server.asyncSideTasks.started == before + 1, "the hit waits behind the miss, without a task yet")
            #expect(wharf.mirror.stats.blobHits.value == afterHits, "the hit is not answered before the miss")
            upstream.releaseStalled()
            let both = try await connection.read(responses: 2, headResponses: [])
            #expect(both.map(\.status) == [200, 200])
            if both.count == 2 {
                #expect(Digest.sha256(of: both[0].body) == slowDigest, "the miss first")
                #expect(Digest.sha256(of: both[1].body) == cachedDigest, "then the hit")
            }
            await eventually { wharf.server.asyncSideTasks.running == 0 }
            #expect(wharf.server.asyncSideTasks.started == before + 2, "the hit behind the miss got its own task")
            connection.close()
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }
}

/// One blocking keep-alive connection to Wharf, for requests sent and answers read step by step.
final class RawConnection: Sendable {
    let fd: Int32
    private let received = ReceivedBytes()

    init(port: Int) throws { self.fd = try RawHTTP.connect(port: port) }

    func send(_ text: String) async throws {
        let fd = self.fd, bytes = Array(text.utf8)
        try await RawHTTP.onOwnThread {
            var sent = 0
            while sent < bytes.count {
                let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard n > 0 else { throw POSIXError(.EPIPE) }
                sent += n
            }
        }
    }

    /// Reads until `count` whole responses arrived (those at `headResponses` are answers to HEAD:
    /// no body), or the connection closes or is silent for 20 s; bytes past them are kept for the next read.
    func read(responses count: Int, headResponses: Set<Int>) async throws -> [(status: Int, body: [UInt8], headers: String)] {
        let fd = self.fd, received = self.received
        return try await RawHTTP.onOwnThread {
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let (responses, used) = HitPathTests.splitCounting(received.bytes, headResponses: headResponses)
                if responses.count >= count {
                    received.drop(used)
                    return Array(responses.prefix(count))
                }
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard n > 0 else { return responses }
                received.append(chunk[0..<n])
            }
        }
    }

    func close() { Glibc.close(self.fd) }

}

/// Bytes read but not yet taken, shared with the reading thread.
final class ReceivedBytes: Sendable {
    private let value = Mutex<[UInt8]>([])
    var bytes: [UInt8] { self.value.withLock { $0 } }
    func append(_ more: ArraySlice<UInt8>) { self.value.withLock { $0.append(contentsOf: more) } }
    func drop(_ count: Int) { self.value.withLock { $0.removeFirst(count) } }
}
