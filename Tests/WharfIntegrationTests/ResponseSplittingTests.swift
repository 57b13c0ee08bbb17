import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution
import Testing
import WharfMirror
import WharfStorage
import WharfTestSupport

/// Issue #12, bug 2: a media type is an upstream's text. When the upstream omits `Content-Type`,
/// the manifest's own `mediaType` was sent unchecked: a CR/LF in it injected headers and even a
/// whole extra response. Media types are validated where they enter (upstream answers, stored
/// records) and every non-constant header value is validated on the way out.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct ResponseSplittingTests {
    static let injected = "application/vnd.oci.image.manifest.v1+json\r\nSet-Cookie: pwned=1\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nX-Smuggled: 1"

    /// An upstream whose manifests have no `Content-Type` and a hostile `mediaType` (or header).
    static func lyingUpstream() -> LoopbackHTTPServer {
        LoopbackHTTPServer { request in
            let parts = request.path.split(separator: "/")
            guard parts.count == 5, parts[3] == "manifests" else { return .json(.ok, "{}") }
            var headers = HTTPHeaders()
            let mediaType: String
            switch parts[4] {
            case "crlf": mediaType = Self.injected
            case "huge": mediaType = "application/" + String(repeating: "x", count: 1 << 20)
            case "badheader":
                mediaType = MediaType.ociManifest
                headers.add(name: "Content-Type", value: "application/vnd.oci.image.manifest.v1+json garbage")
            default: mediaType = MediaType.ociManifest
            }
            let json = #"{"schemaVersion":2,"mediaType":"# + JSONString.quote(mediaType) + #","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:\#(String(repeating: "0", count: 64))","size":2},"layers":[]}"#
            headers.add(name: "Docker-Content-Digest", value: Digest.sha256(of: Array(json.utf8)).description)
            return LoopbackHTTPResponse(status: .ok, headers: headers, body: ByteBuffer(string: json))
        }
    }

    @Test("a hostile media type from the upstream never reaches a response head, and the pipeline stays in step")
    func hostileMediaTypes() async throws {
        let upstream = Self.lyingUpstream()
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: "http://127.0.0.1:\(upstream.port)")
        do {
            for reference in ["crlf", "huge", "badheader"] {
                // Twice: the second time nothing may have been cached for the hit path to send either.
                for round in 0..<2 {
                    let raw = try await RawHTTP.request(
                        "GET /v2/evil/app/manifests/\(reference) HTTP/1.1\r\nHost: w\r\n\r\nGET /v2/ HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n",
                        port: wharf.port, untilClose: true)
                    let text = String(decoding: raw.raw, as: UTF8.self)
                    #expect(raw.status == 502 && raw.bodyText.contains("MANIFEST_INVALID"), "\(reference) #\(round): \(raw.status)")
                    #expect(!text.contains("Set-Cookie") && !text.contains("X-Smuggled"), "\(reference): injected header")
                    #expect(raw.raw.count < 4096, "\(reference): \(raw.raw.count) bytes")
                    let responses = text.components(separatedBy: "HTTP/1.1 ").count - 1
                    #expect(responses == 2 && text.hasSuffix("{}"), "\(reference): \(text)")
                }
            }
            // A plain manifest without Content-Type still gets its own (valid) mediaType.
            let good = try await RawHTTP.request("GET /v2/evil/app/manifests/good HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(good.status == 200 && good.header("content-type") == MediaType.ociManifest)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }

    @Test("a stored record whose media type could not be sent is treated as absent")
    func storedRecordsAreValidated() async throws {
        let upstream = Self.lyingUpstream()
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: "http://127.0.0.1:\(upstream.port)")
        do {
            let bytes = Array(#"{"schemaVersion":2}"#.utf8)
            let digest = Digest.sha256(of: bytes)
            try wharf.mirror.index.putManifest(
                StoredManifest(digest: digest, mediaType: Self.injected, bytes: bytes), upstream: "test-upstream", repository: "evil/app",
                tag: ("stored", AcceptSet.all.classKey))
            #expect(try wharf.mirror.index.manifest(digest) == nil)
            for path in ["manifests/\(digest)", "manifests/stored"] {
                let r = try await RawHTTP.request("GET /v2/evil/app/\(path) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
                let text = String(decoding: r.raw, as: UTF8.self)
                #expect(!text.contains("Set-Cookie") && !text.contains("X-Smuggled"), "\(path): \(r.status)")
            }
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }
}
