import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution
import Testing
import WharfTestSupport
import WharfMirror
import WharfUpstream

/// What Wharf takes from an upstream's answer and what it refuses: a manifest must be labelled and
/// shaped as one, a 429's `Retry-After` is read and capped rather than passed on, a broken or oversized
/// answer is a bad gateway, tag names follow the OCI grammar; and what Wharf's own pages allow a browser.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct UpstreamAnswerRulesTests {
    static func get(_ path: String, port: Int) async throws -> RawHTTP.Response {
        try await RawHTTP.request("GET \(path) HTTP/1.1\r\nHost: w\r\n\(HostileUpstreamTests.accept)Connection: close\r\n\r\n", port: port)
    }

    static func errorCode(_ response: RawHTTP.Response) -> String? {
        struct Errors: Decodable { struct E: Decodable { let code: String }; let errors: [E] }
        return (try? JSONDecoder().decode(Errors.self, from: Data(response.body)))?.errors.first?.code
    }

    /// A valid OCI manifest whose annotation is a script.
    static let manifest = Array(#"""
        {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[],"annotations":{"x":"<html><body><script>alert(document.domain)</script></body></html>"}}
        """#.utf8)

    @Test("a manifest labelled text/html or image/svg+xml, or whose body is not a JSON object, gets 502 MANIFEST_INVALID and is not cached; a good one carries nosniff")
    func manifestTypeAndShape() async throws {
        let hostile = HostileUpstream()
        let digest = Digest.sha256(of: Self.manifest).description
        hostile.script("/v2/r/html/manifests/v1", .manifest(Self.manifest, mediaType: "text/html"))
        hostile.script("/v2/r/html/manifests/\(digest)", .manifest(Self.manifest, mediaType: "text/html"))
        hostile.script("/v2/r/svg/manifests/v1", .manifest(Self.manifest, mediaType: "image/svg+xml"))
        hostile.script("/v2/r/unclosed/manifests/v1", .manifest(Array(#"{"schemaVersion":2,"layers":[[["#.utf8)))
        hostile.script("/v2/r/array/manifests/v1", .manifest(Array("[1,2]".utf8)))
        hostile.script("/v2/r/deep/manifests/v1", .manifest(Array(String(repeating: "[", count: 100_000).utf8)))
        hostile.script("/v2/r/good/manifests/v1", .manifest(Self.manifest))
        try await WharfInstance.behind(hostile) { wharf in
            for path in ["/v2/r/html/manifests/v1", "/v2/r/html/manifests/\(digest)", "/v2/r/svg/manifests/v1", "/v2/r/unclosed/manifests/v1",
                         "/v2/r/array/manifests/v1", "/v2/r/deep/manifests/v1"] {
                for attempt in 1...2 {
                    let answer = try await Self.get(path, port: wharf.port)
                    #expect(answer.status == 502 && Self.errorCode(answer) == "MANIFEST_INVALID", "\(path): \(answer.status) \(answer.bodyText)")
                    #expect(answer.header("content-type")?.hasPrefix("application/json") == true, "\(path): \(answer.header("content-type") ?? "-")")
                    #expect(hostile.count(pathPrefix: path) == attempt, "\(path) was answered from a cache")
                }
            }
            let good = try await Self.get("/v2/r/good/manifests/v1", port: wharf.port)
            #expect(good.status == 200 && good.body == Self.manifest)
            #expect(good.header("x-content-type-options") == "nosniff")
            let hit = try await Self.get("/v2/r/good/manifests/\(digest)", port: wharf.port)  // the event loop's hit path
            #expect(hit.status == 200 && hit.header("x-content-type-options") == "nosniff")
            #expect(hostile.count(pathPrefix: "/v2/r/good/manifests/sha256:") == 0, "served from the cache")
        }
    }

    @Test("a 429's Retry-After reaches the client as whole seconds from 1 to 300, never as the upstream's text")
    func retryAfterIsReadAndCapped() async throws {
        let cases: [(sent: String, told: String)] = [
            ("7", "7"), ("999999999", "300"), ("-5", "1"), ("99999999999999999999999", "60"), ("<script>alert(1)</script>", "60"),
            ("Wed, 21 Oct 2015 07:28:00 GMT", "60"), (String(repeating: "9", count: 8000), "60"),
        ]
        let hostile = HostileUpstream()
        for (i, c) in cases.enumerated() {
            hostile.script(prefix: "/v2/r/n\(i)/blobs/", .status(.tooManyRequests, headers: ["Retry-After": c.sent]))
        }
        try await WharfInstance.behind(hostile) { wharf in
            for (i, c) in cases.enumerated() {
                let answer = try await Self.get("/v2/r/n\(i)/blobs/sha256:\(String(repeating: "ab", count: 32))", port: wharf.port)
                #expect(answer.status == 429 && Self.errorCode(answer) == "TOOMANYREQUESTS", "\(c.sent.prefix(40)): \(answer.status)")
                #expect(answer.header("retry-after") == c.told, "\(c.sent.prefix(40)) became \(answer.header("retry-after")?.prefix(40) ?? "-")")
            }
        }
    }

    @Test("an answer that breaks HTTP is a 502 (not 503 'unreachable'), a manifest over 4 MiB a 502 MANIFEST_INVALID; neither is cached")
    func brokenAndOversizedAnswers() async throws {
        let type = "application/vnd.oci.image.manifest.v1+json"
        let big = 5 << 20
        let raw = RawReplyServer { request in
            switch request.path {
            case "/v2/", "/v2":
                return .init(Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".utf8))
            case "/v2/r/chunks/manifests/v1":
                return .init(Array("HTTP/1.1 200 OK\r\nContent-Type: \(type)\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".utf8), then: .close)
            case "/v2/r/framing/manifests/v1":
                return .init(Array("HTTP/1.1 200 OK\r\nContent-Type: \(type)\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".utf8), then: .close)
            case "/v2/r/big/manifests/v1":
                let head = "HTTP/1.1 200 OK\r\nContent-Type: \(type)\r\nContent-Length: \(big)\r\n\r\n"
                return .init(Array(head.utf8) + [UInt8](repeating: 0x20, count: big), then: .close)
            default:
                return .init(Array("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".utf8))
            }
        }
        try await raw.start()
        let wharf = try await WharfInstance.start(upstream: "http://127.0.0.1:\(raw.port)")
        do {
            for (path, code) in [("/v2/r/chunks/manifests/v1", "UNKNOWN"), ("/v2/r/framing/manifests/v1", "UNKNOWN"), ("/v2/r/big/manifests/v1", "MANIFEST_INVALID")] {
                for attempt in 1...2 {
                    let answer = try await Self.get(path, port: wharf.port)
                    #expect(answer.status == 502 && Self.errorCode(answer) == code, "\(path): \(answer.status) \(answer.bodyText)")
                    #expect(raw.requests.filter { $0.path == path }.count == attempt, "\(path) was answered from a cache")
                }
            }
            #expect(try await Self.get("/v2/", port: wharf.port).status == 200, "still serving")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await raw.stop()
    }

    @Test("tags from the upstream that are not tags by the OCI grammar are left out of tags/list")
    func tagNamesFollowTheGrammar() async throws {
        let hostile = HostileUpstream()
        let names = ["v1", "<img src=x onerror=alert(1)>", "../etc", "latest", "-x", String(repeating: "a", count: 129), "a\u{0}b", "_ok.2-3"]
        let list = try JSONSerialization.data(withJSONObject: ["name": "r/t", "tags": names])
        hostile.script("/v2/r/t/tags/list", .respond(.json(.ok, String(decoding: list, as: UTF8.self))))
        try await WharfInstance.behind(hostile) { wharf in
            let answer = try await Self.get("/v2/r/t/tags/list", port: wharf.port)
            struct Tags: Decodable { let tags: [String] }
            #expect(answer.status == 200)
            #expect(try JSONDecoder().decode(Tags.self, from: Data(answer.body)).tags == ["_ok.2-3", "latest", "v1"])
        }
    }

    @Test("the dashboard allows only its own script, by hash, and cannot be framed; the policy's hash is the page's script's")
    func dashboardPolicy() async throws {
        let hostile = HostileUpstream()
        try await WharfInstance.behind(hostile) { wharf in
            let page = try await RawHTTP.request("GET / HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(page.status == 200 && page.header("x-content-type-options") == "nosniff")
            let policy = page.header("content-security-policy") ?? ""
            #expect(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"), "\(policy)")
            let text = page.bodyText
            let script = try #require(text.range(of: "<script>").flatMap { open in
                text.range(of: "</script>", range: open.upperBound..<text.endIndex).map { String(text[open.upperBound..<$0.lowerBound]) }
            })
            let hash = Data(SHA256.hash(data: Data(script.utf8))).base64EncodedString()
            #expect(policy.contains("script-src 'sha256-\(hash)'"), "\(policy) does not allow the page's script (sha256-\(hash))")
        }
    }
}

extension UpstreamAnswerRulesTests {
    @Test("a blob body trickling just fast enough for the idle timeout is cut at its pace: the client gets no complete body, nothing is cached")
    func trickledBlob() async throws {
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let digest = Digest.sha256(of: bytes).description
        let hostile = HostileUpstream()
        let body = LoopbackHTTPResponse(status: .ok, headers: ["Content-Type": "application/octet-stream"], body: ByteBuffer(bytes: bytes))
        hostile.script("/v2/r/slow/blobs/\(digest)", .dribble(body, every: .milliseconds(50)))  // 20 B/s: 500 s for the whole blob
        try await WharfInstance.behind(hostile, configure: { $0.bodyPace = BodyPace(minimumBytes: 1000, window: .seconds(2)) }) { wharf in
            let started = ContinuousClock.now
            let answer = try await Self.get("/v2/r/slow/blobs/\(digest)", port: wharf.port)
            let took = ContinuousClock.now - started
            #expect(took < .seconds(10), "the trickle held the request for \(took)")
            #expect(answer.body.count < bytes.count, "a complete body went out: \(answer.status), \(answer.body.count) bytes")
            let file = "\(wharf.dataDirectory)/blobs/sha256/\(digest.dropFirst(7).prefix(2))/\(digest.dropFirst(7))"
            #expect(!FileManager.default.fileExists(atPath: file), "the blob was cached")
            #expect(try await Self.get("/v2/", port: wharf.port).status == 200, "still serving")
        }
    }
}

extension UpstreamAnswerRulesTests {
    @Test("a refused redirect is logged with its target; the client is not told where it pointed")
    func refusedRedirectIsNotDescribed() async throws {
        let hostile = HostileUpstream()
        hostile.script("/v2/r/meta/manifests/v1", .redirect(to: "http://169.254.169.254/latest/meta-data/"))
        try await WharfInstance.behind(hostile) { wharf in
            let answer = try await Self.get("/v2/r/meta/manifests/v1", port: wharf.port)
            #expect(answer.status == 503 && Self.errorCode(answer) == "UNAVAILABLE", "\(answer.status) \(answer.bodyText)")
            #expect(!answer.bodyText.contains("169.254"), "\(answer.bodyText)")
        }
    }
}
