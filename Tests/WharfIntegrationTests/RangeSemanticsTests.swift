import Foundation
import Testing
import WharfTestSupport

/// `Range` and `If-Range` on a cached blob as RFC 9110 has them: a range is honoured only while
/// `If-Range` (if sent) names this blob's ETag; a header Wharf does not serve (several ranges) is
/// ignored, so the answer is the whole blob; positions past 64 bits are clamped, not refused.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct RangeSemanticsTests {
    @Test("If-Range with the blob's ETag keeps the range; another ETag or a date gets the whole blob; several ranges get the whole blob; a huge last byte is clamped")
    func rangeSemantics() async throws {
        try await BackpressureTests.withCachedLayers([5000]) { wharf, layers in
            let layer = layers[0]
            let path = "/v2/team/flood/blobs/\(layer.digest)"
            func get(_ headers: String) async throws -> RawHTTP.Response {
                try await RawHTTP.request("GET \(path) HTTP/1.1\r\nHost: w\r\n\(headers)Connection: close\r\n\r\n", port: wharf.port)
            }
            let whole = try await get("")
            #expect(whole.status == 200 && whole.body.count == layer.size)
            let etag = try #require(whole.header("etag"))

            let matching = try await get("Range: bytes=10-19\r\nIf-Range: \(etag)\r\n")
            #expect(matching.status == 206 && matching.body == Array(whole.body[10...19]))
            #expect(matching.header("content-range") == "bytes 10-19/\(layer.size)")
            for validator in ["\"sha256:\(String(repeating: "0", count: 64))\"", "W/\(etag)", "Wed, 21 Oct 2015 07:28:00 GMT"] {
                let stale = try await get("Range: bytes=10-19\r\nIf-Range: \(validator)\r\n")
                #expect(stale.status == 200 && stale.body == whole.body, "If-Range: \(validator) → \(stale.status)")
            }
            let several = try await get("Range: bytes=0-1,5-6\r\n")
            #expect(several.status == 200 && several.body == whole.body)
            let huge = try await get("Range: bytes=4990-99999999999999999999999\r\n")
            #expect(huge.status == 206 && huge.body == Array(whole.body[4990...]), "\(huge.status)")
            #expect(huge.header("content-range") == "bytes 4990-\(layer.size - 1)/\(layer.size)")
            let beyond = try await get("Range: bytes=99999999999999999999-\r\n")
            #expect(beyond.status == 416 && beyond.header("content-range") == "bytes */\(layer.size)")
        }
    }
}
