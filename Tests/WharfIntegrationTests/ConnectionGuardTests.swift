import Foundation
import NIOCore
import OCIDistribution
import Testing
import WharfHTTP
import WharfMirror
import WharfTestSupport
import WharfUpstream
#if canImport(Glibc)
import Glibc
#endif

/// Slow-loris, connection floods and half-closed clients (issue #12, concerns): a request head has a
/// deadline however slowly it trickles, connections are capped in total and per client address with
/// a reserve for probes and cache hits, and every request is answered or its connection closed.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct ConnectionGuardTests {
    @Test("a head trickled one byte at a time is cut off at the head deadline; a slow but whole head is answered")
    func slowLoris() async throws {
        try await Self.withWharf(configure: { $0.requestHeadTimeout = .seconds(1) }) { wharf, _ in
            // A byte every 50 ms for 7 s: never idle (the idle timeout is 120 s), so only the head
            // deadline can close it. The upper bound is the trickle's end, not the 1.25 s the sweep
            // promises: beside the whole suite on 2 cores an event loop's timer can run seconds late.
            let head = "GET /v2/ HTTP/1.1\r\nHost: w\r\nX-Slow: " + String(repeating: "a", count: 110)
            let trickled = try await RawHTTP.onOwnThread { try Self.trickle(port: wharf.port, head, every: 0.05, for: 8) }
            #expect(trickled.closed, "the connection stayed open while the head trickled")
            #expect(trickled.seconds >= 0.9 && trickled.seconds < 7, "closed after \(trickled.seconds) s")
            let whole = try await RawHTTP.onOwnThread {
                try Self.trickle(port: wharf.port, "GET /v2/ HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", every: 0.01, for: 4)
            }
            #expect(String(decoding: whole.received, as: UTF8.self).hasPrefix("HTTP/1.1 200"))
        }
    }

    @Test("on the TLS listener, a handshake trickled one byte at a time is cut off at the head deadline too")
    func slowLorisTLS() async throws {
        let work = try TempDirectory.make("tls-loris")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let certs = try await TestCertificates.make(in: work + "/certs")
        let tls = try TLSCertificate(certificatePath: certs.serverCertificate, keyPath: certs.serverKey)
        try await Self.withWharf(tls: tls, configure: { $0.requestHeadTimeout = .seconds(1) }) { wharf, _ in
            // The first bytes of a TLS 1.2 ClientHello record, then nothing but one byte every 100 ms.
            let hello = "\u{16}\u{03}\u{01}\u{02}\u{00}\u{01}\u{00}\u{01}\u{fc}\u{03}\u{03}" + String(repeating: "a", count: 150)
            let trickled = try await RawHTTP.onOwnThread { try Self.trickle(port: wharf.port, hello, every: 0.05, for: 8) }
            #expect(trickled.closed && trickled.seconds >= 0.9 && trickled.seconds < 7, "closed: \(trickled.closed) after \(trickled.seconds) s")
        }
    }

    @Test("on the TLS listener, a client that half-closes (TCP) after its request gets the whole answer")
    func halfClosedTLS() async throws {
        let work = try TempDirectory.make("tls-half")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let certs = try await TestCertificates.make(in: work + "/certs")
        let tls = try TLSCertificate(certificatePath: certs.serverCertificate, keyPath: certs.serverKey)
        try await Self.withWharf(tls: tls) { wharf, image in
            // Python's ssl module: TLS, the request, then shutdown(SHUT_WR) on the socket (no close_notify).
            let script = """
                import socket, ssl, sys
                ctx = ssl.create_default_context(cafile=sys.argv[2])
                s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="127.0.0.1")
                s.sendall(("GET " + sys.argv[3] + " HTTP/1.1\\r\\nHost: w\\r\\n\\r\\n").encode())
                socket.socket.shutdown(s, socket.SHUT_WR)
                s.settimeout(10)
                data = b""
                while True:
                    d = s.recv(65536)
                    if not d: break
                    data += d
                sys.stdout.write(data.split(b"\\r\\n")[0].decode() + " " + str(len(data)))
                """
            for path in ["/v2/", "/v2/team/guard/manifests/v1", "/v2/team/guard/blobs/\(image.layers[0].digest)"] {
                let run = try await CommandRunner.run(
                    executable: "/usr/bin/python3", arguments: ["-c", script, "\(wharf.port)", certs.caCertificate, path], timeout: .seconds(20))
                #expect(run.status == 0 && run.output.hasPrefix("HTTP/1.1 200"), "\(path): \(run.status) \(run.output.suffix(400))")
                if path.contains("blobs") {
                    let length = Int(run.output.split(separator: " ").last ?? "") ?? 0
                    #expect(length > image.layers[0].size, "\(path): \(length) bytes")
                }
            }
        }
    }

    @Test("a big cache hit still being sent when a graceful shutdown begins is sent whole")
    func shutdownLetsHitsDrain() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [8 << 20], format: .oci)
        try upstream.storage.add(image: image, repository: "team/drain", tag: "v1")
        try await upstream.start()
        let config = try UpstreamConfiguration(name: "test-upstream", url: upstream.registry.url)
        let wharf = try await WharfInstance.start(
            upstreams: [MirrorUpstream(configuration: config, isDefault: true)], configure: { $0.drainTimeout = .seconds(15) })
        do {
            let layer = image.layers[0]
            try await wharf.cache(image.layers, of: "team/drain")
            let digest = try Digest(parsing: layer.digest)
            let hitsBefore = wharf.mirror.stats.blobHits.value
            // About 8 MB/s: the transfer takes about a second, well inside the 15 s drain timeout.
            let fetch = Task {
                try await SlowReader.fetch(
                    "GET /v2/team/drain/blobs/\(layer.digest) HTTP/1.1\r\nHost: w\r\n\r\n", port: wharf.port, bytesPerTick: 80 << 10,
                    tick: .milliseconds(10), stallFor: nil)
            }
            // The hit path counts a hit before it writes: then shutdown finds it sending (a serving
            // mark could still be the one of the fill that cached the blob).
            await eventually("the hit never started") { wharf.mirror.stats.blobHits.value > hitsBefore }
            wharf.server.beginShutdown()
            let slow = try await fetch.value
            let response = try #require(RawHTTP.parse(slow.bytes))
            #expect(response.status == 200 && response.body.count == layer.size, "\(response.body.count) of \(layer.size) bytes")
            #expect(Digest.sha256(of: response.body) == digest)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }

    @Test("past the per-client limit a connection gets 429 at once; a closed one frees its place")
    func perClientLimit() async throws {
        try await Self.withWharf(configure: { $0.connectionLimits = ConnectionLimits(maxTotal: 100, maxPerClient: 4) }) { wharf, _ in
            var open: [Int32] = []
            defer { open.forEach { close($0) } }
            for _ in 0..<4 { open.append(try RawHTTP.connect(port: wharf.port)) }
            // Connections are admitted on their event loops, not always in the order they connected.
            try await eventually { wharf.server.openConnections == 4 }
            let refused = try await RawHTTP.request("GET /v2/ HTTP/1.1\r\nHost: w\r\n\r\n", port: wharf.port)
            #expect(refused.status == 429 && refused.bodyText.contains("TOOMANYREQUESTS") && refused.header("retry-after") == "1")
            close(open.removeLast())
            try await eventually("a connection was not admitted after one closed") {
                try await RawHTTP.request("GET /v2/ HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port).status == 200
            }
        }
    }

    @Test("at the total limit the reserve still answers probes and cache hits, refuses misses, and then everyone is refused")
    func reserve() async throws {
        let limits = ConnectionLimits(maxTotal: 6, maxPerClient: 100, reserve: 2)
        try await Self.withWharf(configure: { $0.connectionLimits = limits }) { wharf, image in
            try await wharf.cache(image.layers, of: "team/guard")
            var open: [Int32] = []
            defer { open.forEach { close($0) } }
            for _ in 0..<4 { open.append(try RawHTTP.connect(port: wharf.port)) }
            try await eventually { wharf.server.openConnections == 4 }
            // Connections 5 and 6 are the reserve.
            let hit = "GET /v2/team/guard/blobs/\(image.layers[0].digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n"
            let served = try await RawHTTP.request(hit, port: wharf.port)
            #expect(served.status == 200 && served.body.count == image.layers[0].size)
            #expect(try await RawHTTP.request("GET /healthz HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port).status == 200)
            let miss = try await RawHTTP.request("GET /v2/team/guard/manifests/other HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(miss.status == 503 && miss.bodyText.contains("connection limit"), "\(miss.status) \(miss.bodyText)")
            // Once the server has seen those three close, two more fill it.
            try await eventually { wharf.server.openConnections == 4 }
            for _ in 0..<2 { open.append(try RawHTTP.connect(port: wharf.port)) }
            try await eventually { wharf.server.openConnections == 6 }
            let full = try await RawHTTP.request("GET /healthz HTTP/1.1\r\nHost: w\r\n\r\n", port: wharf.port)
            #expect(full.status == 503 && full.bodyText.contains("UNAVAILABLE"))
        }
    }

    @Test("a client that half-closes after its request still gets the whole answer, hit or miss; a bare-LF head is answered")
    func halfClosedClients() async throws {
        try await Self.withWharf { wharf, image in
            let layer = image.layers[0]
            for (label, request) in [
                ("ping", "GET /v2/ HTTP/1.1\r\nHost: w\r\n\r\n"),
                ("manifest from upstream", "GET /v2/team/guard/manifests/v1 HTTP/1.1\r\nHost: w\r\n\r\n"),
                ("blob miss", "GET /v2/team/guard/blobs/\(layer.digest) HTTP/1.1\r\nHost: w\r\n\r\n"),
                ("blob hit", "GET /v2/team/guard/blobs/\(layer.digest) HTTP/1.1\r\nHost: w\r\n\r\n"),
                ("range", "GET /v2/team/guard/blobs/\(layer.digest) HTTP/1.1\r\nHost: w\r\nRange: bytes=10-19\r\n\r\n"),
            ] {
                let answer = try await RawHTTP.onOwnThread { try Self.sendThenHalfClose(port: wharf.port, request) }
                let response = RawHTTP.parse(answer.received)
                #expect(answer.closed, "\(label): the server neither answered nor closed")
                #expect(response?.status == 200 || response?.status == 206, "\(label): \(response?.status ?? 0)")
                if label.hasPrefix("blob") { #expect(response?.body.count == layer.size, "\(label): \(response?.body.count ?? 0) bytes") }
                if label == "blob miss" { try await wharf.cache(image.layers, of: "team/guard") }
            }
            let bareLF = try await RawHTTP.onOwnThread { try Self.trickle(port: wharf.port, "GET /v2/ HTTP/1.1\nHost: w\n\n", every: 0, for: 5) }
            #expect(bareLF.closed && RawHTTP.parse(bareLF.received) != nil, "a bare-LF head got no answer in \(bareLF.seconds) s")
        }
    }

    @Test("HEADs of random digests: one client gets its look-up budget and then 429, its hits still answer; a repeated miss is remembered")
    func upstreamLookupsPerClient() async throws {
        try await Self.withWharf { wharf, image in
            try await wharf.cache(image.layers, of: "team/guard")
            wharf.mirror.lookups.configure(perSecond: 5, burst: 20)
            let before = wharf.mirror.upstream.requestCounts.requests
            let started = ContinuousClock.now
            var statuses: [Int: Int] = [:]
            for _ in 0..<200 {
                let hex = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
                let r = try await RawHTTP.request("HEAD /v2/team/guard/blobs/sha256:\(hex) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
                statuses[r.status, default: 0] += 1
            }
            let seconds = Double((ContinuousClock.now - started).components.seconds) + 1
            let sent = wharf.mirror.upstream.requestCounts.requests - before
            let budget = 20 + 5 * seconds
            #expect(Double(sent) <= budget, "\(sent) upstream requests for 200 random HEADs in \(seconds) s")
            #expect(Double(statuses[429, default: 0]) >= 200 - budget, "\(statuses) in \(seconds) s")
            let hit = try await RawHTTP.request("GET /v2/team/guard/blobs/\(image.layers[0].digest) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(hit.status == 200, "cache hits do not spend the budget")

            wharf.mirror.lookups.configure(perSecond: 1000, burst: 1000)
            let missing = "HEAD /v2/team/guard/blobs/sha256:\(String(repeating: "0", count: 64)) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n"
            let first = wharf.mirror.upstream.requestCounts.requests
            for _ in 0..<20 { #expect(try await RawHTTP.request(missing, port: wharf.port).status == 404) }
            #expect(wharf.mirror.upstream.requestCounts.requests - first == 1, "a blob HEAD miss is remembered for its repository")
        }
    }

    struct Exchange {
        var received: [UInt8] = []
        /// The server closed (EOF or reset) before the client gave up.
        var closed = false
        var seconds = 0.0
    }

    /// Sends `text` one byte every `every` seconds, then reads until the server closes or `for` seconds pass.
    static func trickle(port: Int, _ text: String, every: Double, for limit: Double) throws -> Exchange {
        let fd = try RawHTTP.connect(port: port)
        defer { close(fd) }
        let started = Date()
        var exchange = Exchange()
        var tv = timeval(tv_sec: 0, tv_usec: 5_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var pending = Array(text.utf8)[...]
        var nextSend = Date()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while Date().timeIntervalSince(started) < limit {
            if let byte = pending.first, Date() >= nextSend {
                guard [byte].withUnsafeBytes({ send(fd, $0.baseAddress, 1, Int32(MSG_NOSIGNAL)) }) == 1 else {
                    exchange.closed = true
                    break
                }
                pending = pending.dropFirst()
                nextSend = Date().addingTimeInterval(every)
                if every > 0 { continue }
            }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { exchange.received += buffer[0..<n] }
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                exchange.closed = true
                break
            }
        }
        exchange.seconds = Date().timeIntervalSince(started)
        return exchange
    }

    /// Sends `request`, shuts down the sending side, and reads until the server closes (10 s at most).
    static func sendThenHalfClose(port: Int, _ request: String) throws -> Exchange {
        let fd = try RawHTTP.connect(port: port)
        defer { close(fd) }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array(request.utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        shutdown(fd, Int32(SHUT_WR))
        var exchange = Exchange()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                exchange.received += buffer[0..<n]
                continue
            }
            exchange.closed = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)
            return exchange
        }
    }

    /// Runs `body` against a Wharf over a Distribution upstream holding `team/guard:v1` (one 200 KB layer).
    static func withWharf(
        tls: TLSCertificate? = nil, configure: @escaping (inout RegistryServer.Configuration) -> Void = { _ in },
        _ body: (WharfInstance, GeneratedImage) async throws -> Void
    ) async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [200_000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/guard", tag: "v1")
        try await upstream.start()
        let config = try UpstreamConfiguration(name: "test-upstream", url: upstream.registry.url)
        let wharf = try await WharfInstance.start(upstreams: [MirrorUpstream(configuration: config, isDefault: true)], tls: tls, configure: configure)
        do {
            try await body(wharf, image)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }
}
