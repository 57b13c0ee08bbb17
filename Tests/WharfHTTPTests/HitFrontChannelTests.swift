import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import OCIDistribution
import Testing
import WharfMirror
import WharfStorage
import WharfUpstream
@testable import WharfHTTP

/// ``HitFront`` and ``HitPath`` in an `EmbeddedChannel`, without sockets: a Mirror over a temporary
/// data folder (no upstream is ever asked) with one cached, linked blob.
final class FrontFixture {
    static let repository = "team/app"
    let directory: String
    let mirror: Mirror
    let http: UpstreamHTTPClients
    let blob: [UInt8]
    let digest: Digest

    init() throws {
        self.directory = NSTemporaryDirectory() + "wharf-front-\(UUID().uuidString.prefix(8))"
        self.http = UpstreamHTTPClients.make()
        let logger = Logger(label: "front-test", factory: { _ in SwiftLogNoOpLogHandler() })
        // Nothing listens on port 9 (discard); no test path reaches the upstream anyway.
        let upstream = try UpstreamConfiguration(name: "test-upstream", url: "http://127.0.0.1:9")
        self.mirror = try Mirror(dataDirectory: self.directory, upstream: upstream, httpClients: self.http, logger: logger)
        self.blob = Array("a small cached layer\n".utf8) + (0..<1000).map { UInt8(truncatingIfNeeded: $0) }
        self.digest = Digest.sha256(of: self.blob)
        let path = self.mirror.layout.blobPath(self.digest)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(self.blob).write(to: URL(fileURLWithPath: path))
        try self.mirror.index.commitBlob(self.digest, size: Int64(self.blob.count), link: ("test-upstream", Self.repository))
    }

    /// A channel with the front, then (if `decoder`) NIO's request decoder, the hit path and the
    /// connection's lifecycle, as the server builds it (with a ``RequestTap`` before the lifecycle,
    /// which takes what goes to the async side); without the decoder, what the front hands on
    /// arrives as raw ByteBuffers.
    func channel(maxHeadBytes: Int = 16 * 1024, decoder: Bool) throws -> (channel: EmbeddedChannel, hitPath: HitPath) {
        let channel = EmbeddedChannel()
        let front = HitFront(maxHeadBytes: maxHeadBytes)
        try channel.pipeline.syncOperations.addHandler(front)
        let reads = ReadService(mirror: self.mirror, logger: Logger(label: "front-test", factory: { _ in SwiftLogNoOpLogHandler() })) { _, _, _ in }
        let lifecycle = ConnectionLifecycle()
        let hitPath = HitPath(
            reads: reads, edge: nil, front: front, lifecycle: lifecycle,
            openFiles: OpenFilesPerLoop(mirror: self.mirror, capacity: 8).forLoop(channel.eventLoop), isShuttingDown: { false })
        if decoder {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder()))
            try channel.pipeline.syncOperations.addHandler(hitPath)
            try channel.pipeline.syncOperations.addHandler(RequestTap())
            try channel.pipeline.syncOperations.addHandler(lifecycle)
        }
        return (channel, hitPath)
    }

    func close() async {
        try? await self.http.shutdown()
        try? FileManager.default.removeItem(atPath: self.directory)
    }

    var blobPath: String { "/v2/\(Self.repository)/blobs/\(self.digest)" }
}

/// Feeds `bytes` to `channel` cut at `cuts` (offsets, ascending).
func feed(_ channel: EmbeddedChannel, _ bytes: [UInt8], cuts: [Int]) throws {
    var start = 0
    for end in cuts + [bytes.count] where end > start {
        try channel.writeInbound(ByteBuffer(bytes: bytes[start..<end]))
        start = end
    }
}

/// Everything written to the socket so far, as bytes.
func written(_ channel: EmbeddedChannel) throws -> [UInt8] {
    var out: [UInt8] = []
    while let data = try channel.readOutbound(as: IOData.self) {
        guard case .byteBuffer(let b) = data else { Issue.record("a file region on the small-blob path"); continue }
        out += b.readableBytesView
    }
    return out
}

/// The decoded request parts the front and hit path handed on to the async side, as "METHOD uri" per head.
func forwardedHeads(_ channel: EmbeddedChannel) throws -> [String] {
    let tap = try channel.pipeline.syncOperations.handler(type: RequestTap.self)
    defer { tap.heads = [] }
    return tap.heads
}

/// Records the request heads that pass it (on their way to ``ConnectionLifecycle``, which takes them).
final class RequestTap: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    var heads: [String] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let h) = self.unwrapInboundIn(data) { self.heads.append("\(h.method) \(h.uri)") }
        context.fireChannelRead(data)
    }
}

@Suite(.tags(.unit))
struct HitFrontChannelTests {
    static let miss1 = "GET /v2/team/app/blobs/sha256:\(String(repeating: "0", count: 64)) HTTP/1.1\r\nHost: w\r\n\r\n"
    static let miss2 = "HEAD /v2/team/app/manifests/v1 HTTP/1.1\r\nAccept: */*\r\n\r\n"
    static let miss3 = "GET /v2/ HTTP/1.1\r\nUser-Agent: t\r\n\r\n"

    @Test("pipelined misses split at every byte reach the decoder whole and in order; nothing is answered")
    func pipelinedMissesAtEveryCut() async throws {
        let f = try FrontFixture()
        let bytes = Array((Self.miss1 + Self.miss2 + Self.miss3).utf8)
        for cut in 0...bytes.count {
            let (channel, _) = try f.channel(decoder: true)
            try feed(channel, bytes, cuts: [cut])
            #expect(try forwardedHeads(channel) == [
                "GET /v2/team/app/blobs/sha256:\(String(repeating: "0", count: 64))", "HEAD /v2/team/app/manifests/v1", "GET /v2/",
            ], "cut at \(cut)")
            #expect(try written(channel).isEmpty)
            _ = try? channel.finish()
        }
        // Byte by byte.
        let (channel, _) = try f.channel(decoder: true)
        try feed(channel, bytes, cuts: Array(1..<bytes.count))
        #expect(try forwardedHeads(channel).count == 3)
        _ = try? channel.finish()
        await f.close()
    }

    @Test("without a decoder behind it the front is transparent: the bytes it hands on are the bytes it got, at every cut")
    func transparentForMisses() async throws {
        let f = try FrontFixture()
        let body = "POST /v2/team/app/blobs/uploads/ HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        for text in [Self.miss1 + Self.miss2, Self.miss1 + body + Self.miss3, "GET / HTTP/1.0\r\n\r\n" + Self.miss1] {
            let bytes = Array(text.utf8)
            for cut in stride(from: 0, through: bytes.count, by: 3) {
                let (channel, _) = try f.channel(decoder: false)
                try feed(channel, bytes, cuts: [cut, min(bytes.count, cut + 7)])
                var out: [UInt8] = []
                while let b = try channel.readInbound(as: ByteBuffer.self) { out += b.readableBytesView }
                #expect(out == bytes, "cut at \(cut) of \(text.debugDescription)")
                _ = try? channel.finish()
            }
        }
        await f.close()
    }

    @Test("a head over the size limit is held until it passes the limit, then handed on whole, and the rest follows at once")
    func oversizedHead() async throws {
        let f = try FrontFixture()
        let limit = 256
        let bytes = Array(("GET /v2/ HTTP/1.1\r\nX-Long: " + String(repeating: "a", count: 400) + "\r\n\r\n").utf8)
        let (channel, _) = try f.channel(maxHeadBytes: limit, decoder: false)
        var forwarded = 0
        for i in bytes.indices {
            try channel.writeInbound(ByteBuffer(bytes: [bytes[i]]))
            while let b = try channel.readInbound(as: ByteBuffer.self) { forwarded += b.readableBytes }
            if i + 1 <= limit {
                #expect(forwarded == 0, "handed on \(forwarded) bytes of a \(i + 1)-byte head under the limit")
            } else {
                #expect(forwarded == i + 1, "after \(i + 1) bytes only \(forwarded) were handed on")
            }
        }
        _ = try? channel.finish()
        await f.close()
    }

    @Test("a request that is not a GET or HEAD goes to the decoder with its first bytes, body and all")
    func otherMethodsAtOnce() async throws {
        let f = try FrontFixture()
        let (channel, _) = try f.channel(decoder: false)
        try channel.writeInbound(ByteBuffer(string: "PO"))
        #expect(try channel.readInbound(as: ByteBuffer.self).map { String(buffer: $0) } == "PO")
        try channel.writeInbound(ByteBuffer(string: "ST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" + Self.miss1))
        var rest = ""
        while let b = try channel.readInbound(as: ByteBuffer.self) { rest += String(buffer: b) }
        #expect(rest == "ST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" + Self.miss1)
        _ = try? channel.finish()
        await f.close()
    }

    /// The answer the hit path gives to `requests` (as one buffer), for comparison across cuts.
    static func answers(_ f: FrontFixture, _ bytes: [UInt8], cuts: [Int]) throws -> (out: [UInt8], forwarded: [String], active: Bool) {
        let (channel, _) = try f.channel(decoder: true)
        try feed(channel, bytes, cuts: cuts)
        let out = try written(channel)
        let heads = try forwardedHeads(channel)
        let active = channel.isActive
        _ = try? channel.finish()
        return (out, heads, active)
    }

    @Test("pipelined hits split at every byte get the same answers, in order; Connection: close ends the connection")
    func pipelinedHitsAtEveryCut() async throws {
        let f = try FrontFixture()
        let get = "GET \(f.blobPath) HTTP/1.1\r\nHost: w\r\n\r\n"
        let head = "HEAD \(f.blobPath) HTTP/1.1\r\nHost: w\r\n\r\n"
        let close = "GET \(f.blobPath) HTTP/1.1\r\nConnection: close\r\n\r\n"
        let bytes = Array((get + head + close + Self.miss3).utf8)
        let whole = try Self.answers(f, bytes, cuts: [])
        let text = String(decoding: whole.out, as: UTF8.self)
        #expect(text.components(separatedBy: "HTTP/1.1 200 OK\r\n").count == 4, "three answers: \(text.prefix(300))")
        #expect(text.components(separatedBy: "Docker-Content-Digest: \(f.digest)\r\n").count == 4)
        #expect(text.hasSuffix(String(decoding: f.blob, as: UTF8.self)), "the last answer ends with the blob")
        #expect(text.lowercased().contains("connection: close"))
        #expect(whole.forwarded.isEmpty, "a request after Connection: close was handed on: \(whole.forwarded)")
        #expect(!whole.active, "the connection stayed open after Connection: close")
        #expect(f.mirror.stats.blobHits.value == 3)
        for cut in 1..<bytes.count {
            let split = try Self.answers(f, bytes, cuts: [cut])
            #expect(split.out == whole.out && split.forwarded.isEmpty && !split.active, "cut at \(cut)")
        }
        await f.close()
    }

    @Test("after a miss, later hits on the connection wait behind it: they go to the decoder in order, unanswered")
    func hitsQueueBehindAMiss() async throws {
        let f = try FrontFixture()
        let get = "GET \(f.blobPath) HTTP/1.1\r\nHost: w\r\n\r\n"
        let bytes = Array((get + Self.miss2 + get).utf8)
        for cut in [0, 10, get.utf8.count, get.utf8.count + 5, bytes.count - 3] {
            let r = try Self.answers(f, bytes, cuts: [cut])
            let text = String(decoding: r.out, as: UTF8.self)
            #expect(text.components(separatedBy: "HTTP/1.1 200 OK\r\n").count == 2, "one answer, cut at \(cut)")
            #expect(r.forwarded == ["HEAD /v2/team/app/manifests/v1", "GET \(f.blobPath)"], "cut at \(cut)")
        }
        await f.close()
    }

    @Test("once a request goes to the decoder (HTTP/1.0), the decoder has the connection; hits behind it are not answered early")
    func handsOverToTheDecoder() async throws {
        let f = try FrontFixture()
        let get = "GET \(f.blobPath) HTTP/1.1\r\nHost: w\r\n\r\n"
        let bytes = Array((get + "GET /v2/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + get).utf8)
        for cut in [0, 7, get.utf8.count + 3, bytes.count - 1] {
            let r = try Self.answers(f, bytes, cuts: [cut])
            #expect(String(decoding: r.out, as: UTF8.self).components(separatedBy: "HTTP/1.1 200 OK\r\n").count == 2, "cut at \(cut)")
            #expect(r.forwarded == ["GET /v2/", "GET \(f.blobPath)"], "cut at \(cut)")
        }
        await f.close()
    }
}
