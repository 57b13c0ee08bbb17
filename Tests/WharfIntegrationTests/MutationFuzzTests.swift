import Foundation
import Testing
import WharfTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Thousands of requests built from real registry requests and then broken at random (bytes flipped,
/// dropped, repeated; CR, LF, NUL and `%` inserted; requests pipelined; connections half-closed or
/// dropped mid-head) against the real `wharf` executable: every answer is a well-formed HTTP/1.1 head
/// with a status Wharf means to send, the process stays up with its descriptors and memory back near
/// where they started, and nothing outside its data folder changes. The seed is fixed, so a failure
/// repeats; `WHARF_FUZZ_SEED` and `WHARF_FUZZ_COUNT` explore further.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct MutationFuzzTests {
    /// How one request's connection is used.
    enum Delivery { case whole, halfClose, dropMidHead }

    struct Attempt {
        let bytes: [UInt8]
        let delivery: Delivery
    }

    /// One request: a registry request (real digests and tags among hostile ones), sometimes broken.
    static func attempt(_ r: inout SeededRandom, layer: String) -> Attempt {
        let weird = [
            "", "%00", "..", "/../../etc/passwd", "%2e%2e%2f", "%ff%fe", String(repeating: "a", count: 9000), "//", "%", "%zz", ";x",
            "?ns=docker.io", "?ns=%0d%0a", "?n=-1", "?n=99999999999999999999", "?last=..", "#frag", "\u{e9}",
        ]
        let refs = [layer, "sha256:" + String(repeating: "0", count: 64), "sha256:" + String(repeating: "A", count: 64), "sha256:abc",
                    "sha512:" + String(repeating: "a", count: 128), "v1", "latest", "md5:x"]
        let paths = [
            "/v2/", "/v2/fuzz/app/blobs/\(r.pick(refs))", "/v2/fuzz/app/manifests/\(r.pick(refs))", "/v2/fuzz/app/tags/list",
            "/v2/_catalog", "/v2/fuzz/app/referrers/\(r.pick(refs))", "/v2/fuzz/app/blobs/uploads/", "/stats", "/metrics",
            "/healthz", "/readyz", "/", "/dashboard", "/v2/other/blobs/\(layer)",
        ]
        var path = r.pick(paths)
        if r.chance(0.3) { path += r.pick(weird) }
        let method = r.chance(0.2) ? r.pick(["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "G\0T", "GET GET", ""]) : r.pick(["GET", "HEAD"])
        let version = r.chance(0.1) ? r.pick(["HTTP/1.0", "HTTP/2.0", "HTTP/1.", "HTTP/9.9", ""]) : "HTTP/1.1"
        let extras = [
            "Range: bytes=0-10", "Range: bytes=-5", "Range: bytes=100-", "Range: bytes=5-1", "Range: bytes=0-1,3-4", "Range: bytes=-0",
            "Range: bytes=99999999999999999999-", "Range: items=0-1", "Range: bytes=", "Host: evil", "Host:",
            "Content-Length: 5", "Content-Length: -1", "Content-Length: 99999999999999999999", "Content-Length: 1\r\nContent-Length: 2",
            "Transfer-Encoding: chunked", "Transfer-Encoding: gzip, chunked", "Authorization: Bearer x", "Authorization: Basic !!!",
            "Authorization: Basic " + String(repeating: "QQ==", count: 3000), "Accept: " + String(repeating: "x", count: 9000),
            "Expect: 100-continue", "X: \u{1}\u{2}", "Bad header", ": empty", "If-None-Match: \"x\"", "Accept-Encoding: gzip",
        ]
        var headers = ["Host: 127.0.0.1"]
        if r.chance(0.7) { headers.append("Connection: close") }
        for _ in 0..<r.below(4) { headers.append(r.pick(extras)) }
        var text = "\(method) \(path) \(version)\r\n" + headers.joined(separator: "\r\n") + "\r\n\r\n"
        if headers.contains("Content-Length: 5") { text += "hello" }
        if headers.contains(where: { $0.contains("chunked") }) { text += r.chance(0.5) ? "5\r\nhello\r\n0\r\n\r\n" : "zz\r\n" }
        var bytes = Array(text.utf8)
        if r.chance(0.3) { Self.mutate(&bytes, &r) }
        if r.chance(0.1) { bytes = Array(repeating: bytes, count: 2 + r.below(3)).flatMap { $0 } }
        let delivery: Delivery = r.chance(0.05) ? .dropMidHead : (r.chance(0.3) ? .halfClose : .whole)
        return Attempt(bytes: bytes, delivery: delivery)
    }

    static func mutate(_ bytes: inout [UInt8], _ r: inout SeededRandom) {
        for _ in 0..<(1 + r.below(4)) where !bytes.isEmpty {
            let i = r.below(bytes.count)
            switch r.below(4) {
            case 0: bytes[i] = UInt8(r.below(256))
            case 1: bytes.remove(at: i)
            case 2: bytes.insert(contentsOf: Array(repeating: UInt8(r.below(256)), count: 1 + r.below(20)), at: i)
            default: bytes.insert(contentsOf: r.pick([[13, 10], [10], [13], [32], [0], [37]]), at: i)
            }
        }
    }

    /// What came back on one connection: nothing, or the first response's status line and headers.
    enum Answer {
        case nothing
        case head(status: Int, headers: [(String, String)])
        case malformed(String)
    }

    /// Sends one attempt on a fresh connection and reads the first response, as a client would: until
    /// its body is complete (by `Content-Length` or the last chunk), the server closes, 1 MiB arrives,
    /// or 1 s passes without a byte (a head the server is still rightly waiting for).
    static func deliver(_ a: Attempt, port: Int) -> Answer {
        guard let fd = try? RawHTTP.connect(port: port) else { return .malformed("connect failed") }
        defer { close(fd) }
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let bytes = a.delivery == .dropMidHead ? Array(a.bytes.prefix(max(1, a.bytes.count / 2))) : a.bytes
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        switch a.delivery {
        case .dropMidHead: return .nothing
        case .halfClose: shutdown(fd, Int32(SHUT_WR))
        case .whole: break
        }
        let isHead = a.bytes.starts(with: Array("HEAD ".utf8))
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while received.count < 1 << 20, !Self.isComplete(received, isHead: isHead) {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received += chunk[0..<n]
        }
        return Self.parse(received)
    }

    /// True once `bytes` hold a whole first response.
    static func isComplete(_ bytes: [UInt8], isHead: Bool) -> Bool {
        guard case .head(let status, let headers) = Self.parse(bytes) else { return false }
        if isHead || status < 200 || status == 204 || status == 304 { return true }
        guard let headEnd = bytes.firstRange(of: Array("\r\n\r\n".utf8))?.upperBound else { return false }
        if let length = headers.first(where: { $0.0.lowercased() == "content-length" }).flatMap({ Int($0.1) }) {
            return bytes.count >= headEnd + length
        }
        if headers.contains(where: { $0.0.lowercased() == "transfer-encoding" }) {
            return bytes[headEnd...].firstRange(of: Array("0\r\n\r\n".utf8)) != nil
        }
        return false  // read to close
    }

    /// The first response head of `bytes`, checked: `HTTP/1.1 NNN reason`, then `Name: value` lines
    /// whose names are tokens and whose values hold no control characters.
    static func parse(_ bytes: [UInt8]) -> Answer {
        guard !bytes.isEmpty else { return .nothing }
        let text = String(decoding: bytes.prefix(64 << 10), as: UTF8.self)
        guard let end = text.range(of: "\r\n\r\n") else { return .malformed("no end of head: \(text.prefix(120).debugDescription)") }
        var lines = text[..<end.lowerBound].components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0] == "HTTP/1.1", parts[1].count == 3, let status = Int(parts[1]) else {
            return .malformed("status line \(statusLine.debugDescription)")
        }
        let token = CharacterSet(charactersIn: "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        var headers: [(String, String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { return .malformed("header line \(line.debugDescription)") }
            let name = String(line[..<colon]), value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty, name.unicodeScalars.allSatisfy(token.contains) else { return .malformed("header name \(name.debugDescription)") }
            guard !value.unicodeScalars.contains(where: { $0.value < 32 || $0.value == 127 }) else { return .malformed("header value \(line.debugDescription)") }
            headers.append((name, value))
        }
        return .head(status: status, headers: headers)
    }

    /// Statuses Wharf sends on purpose. 500 is not one: no hostile input may reach an internal error
    /// (an upstream's own 500 is relayed as 503).
    static let expectedStatuses: Set<Int> = [100, 200, 206, 304, 307, 400, 401, 403, 404, 405, 408, 411, 413, 414, 416, 429, 431, 501, 502, 503, 504, 505]

    @Test("randomly broken registry requests get well-formed answers and leave the server as it was")
    func mutatedRequests() async throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["WHARF_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x5748_4152_46
        let count = environment["WHARF_FUZZ_COUNT"].flatMap { Int($0) } ?? 2400
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [300_000], format: .oci)
        try upstream.storage.add(image: image, repository: "fuzz/app", tag: "v1")
        try await upstream.start()
        let sandbox = try TempDirectory.make("fuzz")
        let sentinel = sandbox + "/sentinel"
        try Data("untouched".utf8).write(to: URL(fileURLWithPath: sentinel))
        let wharf = try await WharfProcess.start(upstream: upstream.registry.url, dataDirectory: sandbox + "/data")
        do {
            let layer = image.layers[0].digest
            let port = wharf.port, pid = wharf.child.pid
            // The layer becomes a hit, so ranges and HEADs also reach the sendfile path.
            #expect(try await RawHTTP.request("GET /v2/fuzz/app/manifests/v1 HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: port).status == 200)
            #expect(try await RawHTTP.request("GET /v2/fuzz/app/blobs/\(layer) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: port).status == 200)
            let descriptorsBefore = ProcFS.openDescriptors("\(pid)") ?? -1, memoryBefore = ProcFS.residentKiB("\(pid)") ?? -1

            // Eight senders, each with its own stream of attempts, on threads of their own.
            let workers = 8
            let results = try await withThrowingTaskGroup(of: [(Int, Answer)].self) { group in
                for w in 0..<workers {
                    group.addTask {
                        try await RawHTTP.onOwnThread {
                            var r = SeededRandom(seed: seed &+ UInt64(w) &* 0x1_0000_0001)
                            return (0..<(count / workers)).map { i in
                                let a = Self.attempt(&r, layer: layer)
                                return (w * count + i, Self.deliver(a, port: port))
                            }
                        }
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            var statuses: [Int: Int] = [:]
            var problems: [String] = []
            for (n, answer) in results {
                switch answer {
                case .nothing: statuses[0, default: 0] += 1
                case .malformed(let why): problems.append("attempt \(n): \(why)")
                case .head(let status, let headers):
                    statuses[status, default: 0] += 1
                    if !Self.expectedStatuses.contains(status) { problems.append("attempt \(n): status \(status)") }
                    let lengths = headers.filter { $0.0.lowercased() == "content-length" }
                    if lengths.count > 1 || lengths.contains(where: { UInt64($0.1) == nil }) { problems.append("attempt \(n): Content-Length \(lengths)") }
                }
            }
            #expect(problems.isEmpty, "seed \(seed): \(problems.prefix(10)); statuses \(statuses)")
            // Most attempts must get a real answer, or the test would prove nothing.
            let answered = results.count - statuses[0, default: 0]
            #expect(answered * 2 > results.count, "only \(answered) of \(results.count) answered: \(statuses)")
            #expect(statuses.keys.contains(200) && statuses.keys.contains(400) && statuses.keys.contains(404), "\(statuses)")

            #expect(wharf.child.isRunning, "wharf exited: \(wharf.child.output().suffix(2000))")
            #expect(try await RawHTTP.request("GET /v2/ HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: port).status == 200)
            let hit = try await RawHTTP.request("GET /v2/fuzz/app/blobs/\(layer) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: port)
            #expect(hit.status == 200 && hit.body.count == image.layers[0].size)
            // Every connection is closed on our side: the server's descriptors come back down.
            await eventually(within: .seconds(20), "descriptors: \(descriptorsBefore) before") { (ProcFS.openDescriptors("\(pid)") ?? -1) <= descriptorsBefore + 4 }
            let memoryAfter = ProcFS.residentKiB("\(pid)") ?? -1
            #expect(memoryAfter < memoryBefore + 64 << 10, "RSS \(memoryBefore) → \(memoryAfter) KiB")
            #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox).filter { !$0.hasSuffix(".log") }.sorted() == ["data", "sentinel"])
            #expect(try String(contentsOfFile: sentinel, encoding: .utf8) == "untouched")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        try? FileManager.default.removeItem(atPath: sandbox)
        await upstream.stop()
    }
}
