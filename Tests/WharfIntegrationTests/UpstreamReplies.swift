import Foundation
import WharfTestSupport

/// The content of a fuzzed upstream (blobs cut from one random pool, OCI manifests naming them) and its
/// answers: honest ones, and the same answers broken at random in the ways an upstream or a path to it
/// can break them (lying lengths and digests, bad framing, garbage heads, errors, redirects, stalls).
struct UpstreamReplies: Sendable {
    struct Blob: Sendable {
        let digest: String
        let bytes: [UInt8]
    }

    struct Manifest: Sendable {
        let tag: String
        let digest: String
        let bytes: [UInt8]
    }

    static let repository = "fuzz/app"
    static let manifestType = "application/vnd.oci.image.manifest.v1+json"

    let blobs: [Blob]
    let manifests: [Manifest]
    private let blobsByDigest: [String: Int]
    private let manifestsByReference: [String: Int]

    init(blobCount: Int, manifestCount: Int, seed: UInt64) {
        var r = SeededRandom(seed: seed)
        let pool: [UInt8] = (0..<(1 << 18)).flatMap { _ in withUnsafeBytes(of: r.next()) { Array($0) } }  // 2 MiB
        var blobs: [Blob] = []
        for _ in 0..<blobCount {
            let size = r.chance(0.6) ? 1 + r.below(16 << 10) : r.chance(0.75) ? r.below(256 << 10) : (256 << 10) + r.below(1 << 20)
            let start = r.below(pool.count - size)
            let bytes = Array(pool[start..<(start + size)])
            blobs.append(Blob(digest: FileDigest.sha256(bytes), bytes: bytes))
        }
        self.blobs = blobs
        self.manifests = (0..<manifestCount).map { i in
            let config = blobs[(2 * i) % blobs.count], layer = blobs[(2 * i + 1) % blobs.count]
            let json = """
                {"schemaVersion":2,"mediaType":"\(Self.manifestType)",\
                "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(config.digest)","size":\(config.bytes.count)},\
                "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"\(layer.digest)","size":\(layer.bytes.count)}]}
                """
            let bytes = Array(json.utf8)
            return Manifest(tag: "t\(i)", digest: FileDigest.sha256(bytes), bytes: bytes)
        }
        self.blobsByDigest = Dictionary(uniqueKeysWithValues: blobs.enumerated().map { ($1.digest, $0) })
        self.manifestsByReference = Dictionary(
            self.manifests.enumerated().flatMap { [($1.tag, $0), ($1.digest, $0)] }, uniquingKeysWith: { a, _ in a })
    }

    /// An answer before it is put into bytes.
    struct Answer {
        var status = "200 OK"
        var headers: [(String, String)] = []
        var body: [UInt8] = []
        var isHead = false
        var digest: String?
    }

    /// The honest answer to `request`.
    func honest(_ request: RawReplyServer.Request) -> Answer {
        var answer = Answer(isHead: request.method == "HEAD")
        answer.headers = [("Docker-Distribution-API-Version", "registry/2.0")]
        let parts = request.path.split(separator: "/").map(String.init)
        let prefix = ["v2"] + Self.repository.split(separator: "/").map(String.init)
        let realm = #"Bearer realm="http://\#(request.header("host") ?? "127.0.0.1:1")/token",service="fuzz""#
        if parts.first == "v2", request.header("authorization") != "Bearer t0k3n" {
            // Token auth as Distribution does it, with tokens that last a second (so they are fetched often).
            answer.status = "401 Unauthorized"
            answer.body = Array(#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.utf8)
            answer.headers.append(("Content-Type", "application/json"))
            answer.headers.append(("WWW-Authenticate", realm))
        } else if parts == ["v2"] {
            answer.body = Array("{}".utf8)
            answer.headers.append(("Content-Type", "application/json"))
        } else if parts.count == prefix.count + 2, Array(parts.prefix(prefix.count)) == prefix, parts[prefix.count] == "blobs",
            let i = self.blobsByDigest[parts[prefix.count + 1]]
        {
            answer.body = self.blobs[i].bytes
            answer.digest = self.blobs[i].digest
            answer.headers.append(("Content-Type", "application/octet-stream"))
        } else if parts.count == prefix.count + 2, Array(parts.prefix(prefix.count)) == prefix, parts[prefix.count] == "manifests",
            let i = self.manifestsByReference[parts[prefix.count + 1]]
        {
            answer.body = self.manifests[i].bytes
            answer.digest = self.manifests[i].digest
            answer.headers.append(("Content-Type", Self.manifestType))
        } else if parts == ["token"] {
            answer.body = Array(#"{"token":"t0k3n","expires_in":1}"#.utf8)
            answer.headers.append(("Content-Type", "application/json"))
        } else {
            answer.status = "404 Not Found"
            answer.body = Array(#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#.utf8)
            answer.headers.append(("Content-Type", "application/json"))
        }
        if let digest = answer.digest { answer.headers.append(("Docker-Content-Digest", digest)) }
        return answer
    }

    /// `answer` framed honestly: a `Content-Length` head, and the body unless it answers a HEAD.
    static func framed(_ answer: Answer, length: String? = nil, body: [UInt8]? = nil) -> [UInt8] {
        var head = "HTTP/1.1 \(answer.status)\r\n"
        for (name, value) in answer.headers { head += "\(name): \(value)\r\n" }
        head += "Content-Length: \(length ?? String(answer.body.count))\r\n\r\n"
        return Array(head.utf8) + (answer.isHead ? [] : body ?? answer.body)
    }

    static func chunked(_ body: [UInt8], _ r: inout SeededRandom) -> [UInt8] {
        var out: [UInt8] = [], rest = body[...]
        while !rest.isEmpty {
            let n = min(rest.count, 1 + r.below(40_000))
            out += Array("\(String(n, radix: 16))\r\n".utf8) + rest.prefix(n) + [13, 10]
            rest = rest.dropFirst(n)
        }
        return out + Array("0\r\n\r\n".utf8)
    }

    /// Token endpoint answers that hold no usable token, or one that would split a header if sent as is.
    static let badTokens = [
        #"{"token":"a\r\nX-Injected: yes"}"#, #"{"token":"a\nX-Injected: yes"}"#, #"{"token":"a\u0000b"}"#, #"{"token":""}"#, #"{"token":5}"#,
        #"{"token":"ok","expires_in":-5}"#, #"{"token":"ok","expires_in":1e300}"#, "{", "<html>", #"{"token":"\#(String(repeating: "x", count: 200_000))"}"#,
    ]

    /// The reply to `request`: honest about a third of the time, else broken one way at random.
    func reply(_ request: RawReplyServer.Request, honestOnly: Bool, _ r: inout SeededRandom) -> RawReplyServer.Reply {
        var a = self.honest(request)
        let honest = Self.framed(a)
        if honestOnly || r.chance(0.35) { return .init(honest) }
        let body = a.body, head = Array(honest.prefix(honest.count - (a.isHead ? 0 : body.count)))
        if request.path == "/token" {  // sometimes a token answer that is no token, or one that would split a header
            guard r.chance(0.2) else { return .init(honest) }
            let bad = r.pick(Self.badTokens)
            return .init(Self.framed(Answer(headers: [("Content-Type", "application/json")], body: Array(bad.utf8))))
        }
        switch r.below(20) {
        case 0 where !body.isEmpty:  // one byte changed, length kept
            var changed = body
            changed[r.below(changed.count)] ^= UInt8(1 + r.below(255))
            return .init(Self.framed(a, body: changed))
        case 1:  // cut short, then closed or left hanging
            return .init(Array(honest.prefix(r.below(honest.count))), then: r.chance(0.8) ? .close : .hang)
        case 2:  // more than the Content-Length: a smuggled response on the same connection
            return .init(honest + Array("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!".utf8))
        case 3 where !body.isEmpty:  // a Content-Length smaller than the body; the rest stays on the connection
            return .init(Self.framed(a, length: String(r.below(body.count))))
        case 4:  // two different Content-Lengths
            a.headers.append(("Content-Length", String(body.count + 1 + r.below(100))))
            return .init(Self.framed(a))
        case 5:  // chunked, honest or also with a Content-Length
            var h = "HTTP/1.1 \(a.status)\r\n" + a.headers.map { "\($0): \($1)\r\n" }.joined() + "Transfer-Encoding: chunked\r\n"
            if r.chance(0.4) { h += "Content-Length: \(body.count)\r\n" }
            return .init(Array((h + "\r\n").utf8) + (a.isHead ? [] : Self.chunked(body, &r)))
        case 6:  // chunked, broken: a bad size, or no last chunk before the close
            let h = "HTTP/1.1 \(a.status)\r\n" + a.headers.map { "\($0): \($1)\r\n" }.joined() + "Transfer-Encoding: chunked\r\n\r\n"
            let chunks = Self.chunked(body, &r)
            let broken = r.chance(0.5) ? Array("zz\r\n".utf8) + body.prefix(10) : Array(chunks.prefix(max(0, chunks.count - 5)))
            return .init(Array(h.utf8) + broken, then: .close)
        case 7:  // a status line that is not one
            let line = r.pick(["HTTP/1.1 2OO OK", "HTP/1.1 200 OK", "HTTP/1.1 200", "HTTP/2 200 OK", "HTTP/1.1 99999 X", "HTTP/1.1 -200 X", "\0\0\0 200", "HTTP/1.0 200 OK"])
            return .init(Array((line + "\r\n").utf8) + head.drop { $0 != 10 }.dropFirst() + (a.isHead ? [] : body), then: .close)
        case 8:  // a header line that is not one
            let bad = r.pick([
                "X-Nul: a\0b", "X-Cr: a\rb", " X-Fold: folded", "NoColon", "X-Space : v", "X-Long: " + String(repeating: "v", count: 100_000),
                "Docker-Content-Digest: sha256:\u{1}", "Content-Type: application/json\u{7f}",
            ])
            let text = "HTTP/1.1 \(a.status)\r\n\(bad)\r\n" + a.headers.map { "\($0): \($1)\r\n" }.joined()
            return .init(Array((text + "Content-Length: \(body.count)\r\n\r\n").utf8) + (a.isHead ? [] : body))
        case 9:  // closed before or inside the head
            return .init(Array(head.prefix(r.below(head.count))), then: .close)
        case 10:  // 1xx answers first (legal)
            return .init(Array("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n".utf8) + honest)
        case 11:  // a Docker-Content-Digest naming other content
            a.headers.removeAll { $0.0 == "Docker-Content-Digest" }
            a.headers.append(("Docker-Content-Digest", r.pick([self.blobs[r.below(self.blobs.count)].digest, "sha256:zz", "md5:abc", ""])))
            return .init(Self.framed(a))
        case 12:  // another media type
            a.headers.removeAll { $0.0 == "Content-Type" }
            a.headers.append(("Content-Type", r.pick(["text/html", "", "application/json", String(repeating: "a/b", count: 2000), "application/vnd.docker.distribution.manifest.list.v2+json"])))
            return .init(Self.framed(a))
        case 13:  // an error status
            let (status, extra) = r.pick([
                ("500 Internal Server Error", ""), ("503 Service Unavailable", "Retry-After: soon\r\n"), ("429 Too Many Requests", "Retry-After: 1\r\n"),
                ("404 Not Found", ""), ("401 Unauthorized", "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:1/token\",service=\"x\"\r\n"),
                ("401 Unauthorized", "WWW-Authenticate: Bearer realm=\r\n"),
                ("401 Unauthorized", "WWW-Authenticate: Bearer realm=\"http://\(request.header("host") ?? "127.0.0.1:1")/token\",service=\"fuzz\"\r\n"), ("403 Forbidden", ""), ("418 I'm a teapot", ""), ("200 OK", ""),
            ])
            let text = "HTTP/1.1 \(status)\r\n\(extra)Content-Type: application/json\r\nContent-Length: 2\r\n\r\n"
            return .init(Array(text.utf8) + (a.isHead ? [] : Array("{}".utf8)))
        case 14:  // a redirect nowhere good
            let location = r.pick(["", "javascript:alert(1)", "http://127.0.0.1:1/x", request.target, "http://[::1", "file:///etc/passwd", "//evil.example/x"])
            return .init(Array("HTTP/1.1 307 Temporary Redirect\r\nLocation: \(location)\r\nContent-Length: 0\r\n\r\n".utf8))
        case 15:  // a body encoding that is not there
            a.headers.append(("Content-Encoding", "gzip"))
            return .init(Self.framed(a))
        case 16:  // a body after a HEAD's answer, or on a 204
            return r.chance(0.5) ? .init(head + body) : .init(Array("HTTP/1.1 204 No Content\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
        case 17:  // a Content-Length that is not a length
            return .init(Self.framed(a, length: r.pick(["-1", "99999999999999999999", "0x10", "+5", "1 2", ""])), then: .close)
        case 18:  // no length at all: the body runs to the close (legal for a response)
            let text = "HTTP/1.1 \(a.status)\r\n" + a.headers.map { "\($0): \($1)\r\n" }.joined() + "Connection: close\r\n\r\n"
            return .init(Array(text.utf8) + (a.isHead ? [] : body), then: .close)
        default:  // the head, then nothing: the body idle timeout ends it
            return .init(head, then: .hang)
        }
    }
}
