import NIOCore
import NIOEmbedded
import NIOHTTP1
@testable import WharfHTTP
import WharfTestSupport

/// Random request heads: well-formed GET/HEAD heads with random headers, and the same heads with
/// one or more of the mutations a scanner must not get wrong.
enum RequestHeadGenerator {
    static let hex = Array("0123456789abcdef")
    static let tokenBytes = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~")
    static let targetBytes = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:/?#[]@!$&'()*+,;=%")

    static func target(_ r: inout SeededRandom) -> String {
        let name = r.pick(["team/app", "library/alpine", "a", "x/y/z", "Team/App", "a..b"])
        let digest = "sha256:" + String((0..<64).map { _ in r.pick(Self.hex) })
        switch Int.random(in: 0..<8, using: &r) {
        case 0: return "/v2/\(name)/blobs/\(digest)"
        case 1: return "/v2/\(name)/manifests/\(r.pick(["v1", "latest", digest, "3.20"]))"
        case 2: return "/v2/\(name)/blobs/\(digest)?ns=\(r.pick(["docker.io", "ghcr.io", ""]))"
        case 3: return "/v2/"
        case 4: return "/"
        case 5: return "/v2/\(name)/tags/list?n=\(Int.random(in: 0..<100, using: &r))"
        case 6: return "/" + String((0..<Int.random(in: 0..<40, using: &r)).map { _ in r.pick(Self.targetBytes) })
        default: return "/healthz"
        }
    }

    static func randomCase(_ s: String, _ r: inout SeededRandom) -> String {
        String(s.map { r.chance(0.3) ? Character($0.uppercased()) : Character($0.lowercased()) })
    }

    static func ows(_ r: inout SeededRandom) -> String {
        r.pick(["", "", "", " ", "  ", "\t", " \t"])
    }

    /// One header line without its CRLF.
    static func header(_ r: inout SeededRandom) -> String {
        let (name, value): (String, String)
        switch Int.random(in: 0..<16, using: &r) {
        case 0: (name, value) = ("Host", r.pick(["w", "127.0.0.1:5000", "registry.example", ""]))
        case 1: (name, value) = ("Accept", r.pick([
            "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json, */*;q=0.5",
            "*/*", "application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json", "",
        ]))
        case 2: (name, value) = ("If-None-Match", r.pick(["\"sha256:abc\"", "*", "W/\"x\", \"y\"", ""]))
        case 3: (name, value) = ("Connection", r.pick([
            "keep-alive", "close", "Close", "CLOSE", "Keep-Alive", "keep-alive, close", "close, keep-alive", "TE, close",
            "upgrade", "Upgrade, keep-alive", "keep-alive, keep-alive", "close, close", "", "closed", "xclose", "close x", "te",
            " close ", "\tclose", ",close", "close,", "foo, Close , bar",
        ]))
        case 4: (name, value) = ("Range", r.pick(["bytes=0-99", "bytes=5-", ""]))
        case 5: (name, value) = ("Authorization", r.pick(["Bearer abc", "Basic YTpi", ""]))
        case 6: (name, value) = ("User-Agent", r.pick([
            "containerd/1.6.20", "docker/20.10 go/1.19", "skopeo", "curl/7.88.1", #"evil "q" x=1 \ msg="forged""#, "tab\tinside", "",
        ]))
        case 7: (name, value) = ("Accept-Encoding", r.pick(["gzip", "identity", "gzip, deflate"]))
        case 8: (name, value) = ("X-" + String((0..<Int.random(in: 1..<12, using: &r)).map { _ in r.pick(Self.tokenBytes) }),
                                 String((0..<Int.random(in: 0..<30, using: &r)).map { _ in Character(Unicode.Scalar(UInt8.random(in: 0x20...0x7E, using: &r))) }))
        case 9: (name, value) = ("Docker-Distribution-API-Version", "registry/2.0")
        case 10: (name, value) = ("Content-Length", r.pick(["0", "5", ""]))
        case 11: (name, value) = ("Transfer-Encoding", r.pick(["chunked", "identity", "gzip, chunked"]))
        case 12: (name, value) = ("Expect", "100-continue")
        case 13: (name, value) = ("Upgrade", r.pick(["h2c", "websocket"]))
        case 14: (name, value) = ("Keep-Alive", "timeout=5")
        default: (name, value) = ("Cache-Control", r.pick(["no-cache", "max-age=0"]))
        }
        return Self.randomCase(name, &r) + ":" + Self.ows(&r) + value + Self.ows(&r)
    }

    /// A well-formed head: request line, 0…12 headers (the bodyless ones far more often), CRLFCRLF.
    static func validHead(_ r: inout SeededRandom) -> [UInt8] {
        var lines = ["\(r.chance(0.7) ? "GET" : "HEAD") \(Self.target(&r)) HTTP/1.1"]
        for _ in 0..<Int.random(in: 0...12, using: &r) {
            var line = Self.header(&r)
            // Bodies, upgrades and expectations are rarer than in real traffic's worst case, so most heads are takeable.
            while r.chance(0.8), ["content-length", "transfer-encoding", "expect", "upgrade"].contains(where: { line.lowercased().hasPrefix($0 + ":") }) {
                line = Self.header(&r)
            }
            lines.append(line)
        }
        return Array((lines.joined(separator: "\r\n") + "\r\n\r\n").utf8)
    }

    /// `head` with one random mutation, sometimes two or three.
    static func mutated(_ head: [UInt8], _ r: inout SeededRandom) -> [UInt8] {
        var bytes = head
        let count = r.chance(0.7) ? 1 : r.chance(0.6) ? 2 : 3
        for _ in 0..<count { bytes = Self.mutate(bytes, &r) }
        return bytes
    }

    static func mutate(_ head: [UInt8], _ r: inout SeededRandom) -> [UInt8] {
        var s = head
        let crlfs = Self.crlfPositions(s)
        let body = Array(s.dropLast(2))  // without the final empty line's CRLF
        func insertLine(_ line: String) -> [UInt8] {
            let at = crlfs.first.map { $0 + 2 } ?? 0
            return Array(s[..<at]) + Array((line + "\r\n").utf8) + Array(s[at...])
        }
        switch Int.random(in: 0..<24, using: &r) {
        case 0:  // bare LF for one CRLF
            if let at = crlfs.randomElement(using: &r) { s.remove(at: at) }
        case 1: s = insertLine("X-Folded: a\r\n \tb")  // obs-fold: a continuation line
        case 2: s = insertLine("Content-Length: 0"); s = insertLine("Content-Length: \(r.pick(["0", "1"]))")
        case 3: s = insertLine("Transfer-Encoding: \(r.pick(["chunked", "identity", "chunked, identity"]))")
        case 4: s.insert(0, at: Int.random(in: 0..<s.count, using: &r))  // a NUL anywhere
        case 5: s = insertLine("X-Long: " + String(repeating: r.pick(["a", " ", "\t"]), count: Int.random(in: 100...2000, using: &r)))
        case 6:  // missing or other version
            if let sp = s.lastIndex(of: UInt8(ascii: " "), before: crlfs.first ?? 0), let first = crlfs.first {
                s.replaceSubrange(sp..<first, with: Array(r.pick(["", " HTTP/1.0", " HTTP/1.2", " HTTP/2.0", " http/1.1", " HTTP/1.1 ", " HTTP/11", " HTTP/1.1\t"]).utf8))
            }
        case 7:  // lowercase or other method
            if let sp = s.firstIndex(of: UInt8(ascii: " ")) {
                s.replaceSubrange(0..<sp, with: Array(r.pick(["get", "head", "Get", "POST", "PUT", "OPTIONS", "GETX", "DELETE", "CONNECT"]).utf8))
            }
        case 8:  // absolute-form, asterisk or odd target
            if let sp = s.firstIndex(of: UInt8(ascii: " ")) {
                let form = r.pick(["http://w/v2/", "http://127.0.0.1:5000/v2/a/blobs/sha256:00", "*", "v2/", "//v2/", "/v2/ x", "/\u{7F}", "/caf\u{E9}", "/%00", "/a\u{1}"])
                s.insert(contentsOf: Array(form.utf8), at: sp + 1)
                if form.hasPrefix("http") || form == "*" || form == "v2/" {
                    // Replace the original target rather than prefix it.
                    if let next = s[(sp + 1 + form.utf8.count)...].firstIndex(of: UInt8(ascii: " ")) { s.removeSubrange((sp + 1 + form.utf8.count)..<next) }
                }
            }
        case 9: s = insertLine("Host : w")  // space before the colon
        case 10: s = insertLine(": novalue")  // empty name
        case 11: s = insertLine("NoColon")
        case 12: s = insertLine("X-Ctl: a\u{1}b")
        case 13: s = insertLine("X-Del: a\u{7F}b")
        case 14: s = insertLine("X-Obs: caf\u{E9} \u{FF}")  // obs-text (UTF-8 of é)
        case 15: if let first = crlfs.first, first >= 9 { s.insert(UInt8(ascii: " "), at: first - 9) }  // double space before the version
        case 16: if let at = crlfs.randomElement(using: &r) { s.remove(at: at + 1) }  // CR without LF
        case 17: s = insertLine("Connection: \(r.pick(["close", "keep-alive", "upgrade", "Close, TE", "close\t", "keep-alive,close"]))")
        case 18: s = insertLine("X-B@d: v")  // a separator in the name
        case 19: s = Array("\r\n".utf8) + s  // a leading empty line
        case 20: s = body + Array("\n".utf8)  // ends in CRLF LF
        case 21: s = insertLine("Upgrade: h2c")
        case 22: s = insertLine("Expect: 100-continue")
        default:  // many fields
            for i in 0..<Int.random(in: 200...300, using: &r) { s = insertLine("X-F\(i): v") }
        }
        return s
    }

    static func crlfPositions(_ s: [UInt8]) -> [Int] {
        guard s.count >= 2 else { return [] }
        return (0..<(s.count - 1)).filter { s[$0] == 0x0D && s[$0 + 1] == 0x0A }
    }
}

extension Array where Element == UInt8 {
    func lastIndex(of byte: UInt8, before end: Int) -> Int? { self[..<Swift.min(end, self.count)].lastIndex(of: byte) }
}

/// What NIO's HTTP/1 server decoder, configured as ``RegistryServer`` configures it, makes of some bytes.
struct DecoderVerdict {
    var parts: [HTTPServerRequestPart] = []
    var error: (any Error)?

    var heads: [HTTPRequestHead] { self.parts.compactMap { if case .head(let h) = $0 { h } else { nil } } }

    static func decode(_ bytes: [UInt8], maxHeadBytes: Int) -> DecoderVerdict {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = maxHeadBytes
        limits.maxHeaderFieldSize = maxHeadBytes
        limits.maxHeaderFieldCount = 256
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(limitConfiguration: limits)))
        var verdict = DecoderVerdict()
        do {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
        } catch {
            verdict.error = error
        }
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) { verdict.parts.append(part) }
        _ = try? channel.finish()
        return verdict
    }
}

extension HitRequestScanner {
    /// Scans a whole buffer at once (reading the user agent, as when access logs are on).
    static func scan(_ bytes: [UInt8], maxHeadBytes: Int) -> Scan {
        bytes.withUnsafeBytes { Self.scan($0, maxHeadBytes: maxHeadBytes, userAgent: true) }
    }
}
