import NIOCore
import NIOHTTP1
import OCIDistribution
import Synchronization
import WharfMirror
import WharfStorage
import WharfUpstream
import AsyncHTTPClient
import Foundation
import Testing
import WharfTestSupport

/// Hostile requests get the right OCI error and status, touch nothing outside the data folder,
/// and leave the server healthy.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct HostileInputTests {
    struct Case: CustomStringConvertible {
        let name: String
        let request: String
        let status: Int
        let code: String?
        var description: String { self.name }
    }

    static let hex = String(repeating: "ab", count: 32)

    static func get(_ path: String, _ extra: String = "") -> String {
        "GET \(path) HTTP/1.1\r\nHost: wharf\r\n\(extra)Connection: close\r\n\r\n"
    }

    static func cases(layer: String) -> [Case] {
        let h = hex
        return [
            Case(name: "dot-dot in name", request: get("/v2/../../etc/passwd/blobs/sha256:\(h)"), status: 400, code: "NAME_INVALID"),
            Case(name: "dot-dot component", request: get("/v2/team/../../x/manifests/latest"), status: 400, code: "NAME_INVALID"),
            Case(name: "encoded dot-dot", request: get("/v2/%2e%2e/%2e%2e/manifests/latest"), status: 400, code: "NAME_INVALID"),
            Case(name: "encoded slash in name", request: get("/v2/team%2F..%2Fx/manifests/latest"), status: 400, code: "NAME_INVALID"),
            Case(name: "traversal in digest", request: get("/v2/team/app/blobs/sha256:..%2F..%2Fetc%2Fpasswd"), status: 400, code: "DIGEST_INVALID"),
            Case(name: "uppercase hex", request: get("/v2/team/app/blobs/sha256:\(h.uppercased())"), status: 400, code: "DIGEST_INVALID"),
            Case(name: "short digest", request: get("/v2/team/app/blobs/sha256:abc123"), status: 400, code: "DIGEST_INVALID"),
            Case(name: "long digest", request: get("/v2/team/app/blobs/sha256:\(h)00"), status: 400, code: "DIGEST_INVALID"),
            Case(name: "unknown algorithm", request: get("/v2/team/app/blobs/md5:d41d8cd98f00b204e9800998ecf8427e"), status: 400, code: "DIGEST_INVALID"),
            Case(name: "bad algorithm grammar", request: get("/v2/team/app/blobs/sha256-:\(h)"), status: 400, code: "DIGEST_INVALID"),
            Case(name: "NUL in digest", request: get("/v2/team/app/blobs/sha256:\(h)%00"), status: 400, code: "DIGEST_INVALID"),
            Case(name: "non-hex digest", request: get("/v2/team/app/manifests/sha256:\(String(repeating: "zz", count: 32))"), status: 400, code: "DIGEST_INVALID"),
            Case(name: "empty digest", request: get("/v2/team/app/blobs/sha256:"), status: 400, code: "DIGEST_INVALID"),
            Case(name: "bad referrers digest", request: get("/v2/team/app/referrers/notadigest"), status: 400, code: "DIGEST_INVALID"),
            Case(name: "invalid tag chars", request: get("/v2/team/app/manifests/bad!tag"), status: 400, code: "TAG_INVALID"),
            Case(name: "tag too long", request: get("/v2/team/app/manifests/" + String(repeating: "t", count: 129)), status: 400, code: "TAG_INVALID"),
            Case(name: "tag starting with dot", request: get("/v2/team/app/manifests/.hidden"), status: 400, code: "TAG_INVALID"),
            Case(name: "tag with NUL", request: get("/v2/team/app/manifests/latest%00"), status: 400, code: "TAG_INVALID"),
            Case(name: "uppercase name", request: get("/v2/Team/App/manifests/latest"), status: 400, code: "NAME_INVALID"),
            Case(name: "empty name component", request: get("/v2/team//app/manifests/latest"), status: 400, code: "NAME_INVALID"),
            Case(name: "name too long", request: get("/v2/" + String(repeating: "a", count: 300) + "/manifests/latest"), status: 400, code: "NAME_INVALID"),
            Case(name: "name ending in separator", request: get("/v2/team-/manifests/latest"), status: 400, code: "NAME_INVALID"),
            Case(name: "n not a number", request: get("/v2/team/app/tags/list?n=abc"), status: 400, code: "PAGINATION_NUMBER_INVALID"),
            Case(name: "huge n", request: get("/v2/team/app/tags/list?n=99999999999999999999"), status: 400, code: "PAGINATION_NUMBER_INVALID"),
            Case(name: "negative n", request: get("/v2/team/app/tags/list?n=-1"), status: 400, code: "PAGINATION_NUMBER_INVALID"),
            Case(name: "malformed query escape", request: get("/v2/team/app/tags/list?last=%ZZ"), status: 400, code: "UNSUPPORTED"),
            Case(name: "invalid last", request: get("/v2/team/app/tags/list?last=../../x"), status: 400, code: "TAG_INVALID"),
            Case(name: "malformed range", request: get("/v2/team/app/blobs/\(layer)", "Range: bytes=abc\r\n"), status: 416, code: "RANGE_INVALID"),
            Case(name: "absolute-form target (RFC 9112 §3.2.2)", request: get("http://w/v2/team/app/blobs/\(layer)"), status: 200, code: nil),
            Case(name: "absolute-form target with user info", request: get("http://u@w/v2/"), status: 400, code: "NAME_INVALID"),
            Case(name: "absolute-form target without a path", request: get("http://w"), status: 400, code: "NAME_INVALID"),
            Case(name: "multi range (ignored: the whole blob)", request: get("/v2/team/app/blobs/\(layer)", "Range: bytes=0-1,5-6\r\n"), status: 200, code: nil),
            Case(name: "reversed range", request: get("/v2/team/app/blobs/\(layer)", "Range: bytes=5-1\r\n"), status: 416, code: "RANGE_INVALID"),
            Case(name: "overflowing range", request: get("/v2/team/app/blobs/\(layer)", "Range: bytes=99999999999999999999-\r\n"), status: 416, code: "RANGE_INVALID"),
            Case(name: "range past the end", request: get("/v2/team/app/blobs/\(layer)", "Range: bytes=999999999-\r\n"), status: 416, code: "RANGE_INVALID"),
            Case(name: "PUT manifest", request: "PUT /v2/team/app/manifests/latest HTTP/1.1\r\nHost: w\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", status: 405, code: "UNSUPPORTED"),
            Case(name: "POST upload", request: "POST /v2/team/app/blobs/uploads/ HTTP/1.1\r\nHost: w\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status: 405, code: "UNSUPPORTED"),
            Case(name: "PATCH upload", request: "PATCH /v2/team/app/blobs/uploads/abc HTTP/1.1\r\nHost: w\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status: 405, code: "UNSUPPORTED"),
            Case(name: "DELETE blob", request: "DELETE /v2/team/app/blobs/sha256:\(h) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", status: 405, code: "UNSUPPORTED"),
            Case(name: "oversize headers", request: get("/v2/", "X-Big: \(String(repeating: "x", count: 40_000))\r\n"), status: 431, code: "UNSUPPORTED"),
            Case(name: "oversize URI", request: get("/v2/team/app/manifests/" + String(repeating: "a", count: 10_000)), status: 414, code: "NAME_INVALID"),
            Case(name: "garbage request line", request: "HELLO WORLD\r\n\r\n", status: 400, code: "UNSUPPORTED"),
            Case(name: "unknown endpoint", request: get("/etc/passwd"), status: 404, code: "NOT_FOUND"),
            Case(name: "unknown v2 endpoint", request: get("/v2/team/app/whatever/x"), status: 404, code: "NOT_FOUND"),
            Case(name: "unknown blob (valid digest)", request: get("/v2/team/app/blobs/sha256%3A\(h)"), status: 404, code: "BLOB_UNKNOWN"),
            Case(name: "unknown manifest", request: get("/v2/team/app/manifests/nope"), status: 404, code: "MANIFEST_UNKNOWN"),
            Case(name: "ns with NUL", request: get("/v2/team/app/manifests/latest?ns=b.example%00"), status: 400, code: "NAME_INVALID"),
            Case(name: "ns with leading space", request: get("/v2/team/app/blobs/\(layer)?ns=%20b.example"), status: 400, code: "NAME_INVALID"),
            Case(name: "empty ns", request: get("/v2/team/app/manifests/latest?ns="), status: 400, code: "NAME_INVALID"),
            Case(name: "ns with CRLF", request: get("/v2/team/app/manifests/latest?ns=a%0d%0aSet-Cookie:x"), status: 400, code: "NAME_INVALID"),
            Case(name: "sha512 blob", request: get("/v2/team/app/blobs/sha512:\(String(repeating: "ab", count: 64))"), status: 400, code: "DIGEST_INVALID"),
            Case(name: "sha512 manifest", request: get("/v2/team/app/manifests/sha512:\(String(repeating: "ab", count: 64))"), status: 400, code: "DIGEST_INVALID"),
        ]
    }

    @Test("a table of hostile requests")
    func hostileTable() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [10_000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try await upstream.start()
        let sandbox = try TempDirectory.make("hostile")
        let dataDir = sandbox + "/data"
        let sentinel = sandbox + "/sentinel"
        try Data("untouched".utf8).write(to: URL(fileURLWithPath: sentinel))
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url, dataDirectory: dataDir)
        do {
            let layer = image.layers[0].digest
            // Make the layer a cache hit so range errors are checked on the sendfile path too.
            let warm = try await RawHTTP.request(Self.get("/v2/team/app/blobs/\(layer)"), port: wharf.port)
            #expect(warm.status == 200)
            let cases = Self.cases(layer: layer)
            #expect(cases.count >= 30)
            for c in cases {
                let r = try await RawHTTP.request(c.request, port: wharf.port)
                #expect(r.status == c.status, "\(c.name): got \(r.status) \(r.bodyText.prefix(200))")
                if let code = c.code {
                    #expect(r.bodyText.contains("\"code\":\"\(code)\""), "\(c.name): body \(r.bodyText.prefix(200))")
                    #expect(r.header("content-type")?.hasPrefix("application/json") == true, "\(c.name): content-type")
                }
                let ping = try await RawHTTP.request(Self.get("/v2/"), port: wharf.port)
                #expect(ping.status == 200, "server unhealthy after \(c.name)")
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox).sorted() == ["data", "sentinel"])
            #expect(try String(contentsOfFile: sentinel, encoding: .utf8) == "untouched")
            #expect(try FileManager.default.contentsOfDirectory(atPath: dataDir).sorted() == ["blobs", "index", "tmp"])
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        try? FileManager.default.removeItem(atPath: sandbox)
        await upstream.stop()
    }
}
