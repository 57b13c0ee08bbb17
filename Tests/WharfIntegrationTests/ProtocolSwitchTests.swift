import Foundation
import Testing
import WharfTestSupport

/// Requests NIO's decoder takes for a switch of protocol (an `Upgrade` on a `GET`, a `CONNECT`), after
/// which it parses nothing more: each is answered, framed, and ends the connection at once, instead
/// of leaving a client that reuses it waiting until a timeout.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct ProtocolSwitchTests {
    /// Sends `request` and reads until the server closes; fails the test if that takes 5 s or more.
    static func exchange(_ request: String, port: Int) async throws -> [UInt8] {
        let started = ContinuousClock.now
        let raw = try await RawHTTP.request(request, port: port, untilClose: true).raw
        let took = ContinuousClock.now - started
        #expect(took < .seconds(5), "the connection stayed open \(took)")
        return raw
    }

    @Test("a GET with Connection: Upgrade (curl --http2's h2c, websocket) is answered with Connection: close and the connection closes; a request pipelined behind it is not left hanging")
    func upgradeEndsTheConnection() async throws {
        let hostile = HostileUpstream()
        try await WharfInstance.behind(hostile) { wharf in
            for upgrade in ["h2c", "websocket"] {
                let raw = try await Self.exchange(
                    "GET /v2/ HTTP/1.1\r\nHost: w\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: \(upgrade)\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
                        + "GET /v2/ HTTP/1.1\r\nHost: w\r\n\r\n", port: wharf.port)
                let first = try #require(RawHTTP.parse(raw))
                #expect(first.status == 200 && first.bodyText == "{}")
                #expect(first.header("connection")?.lowercased() == "close", "\(upgrade): no Connection: close")
                #expect(raw.count == first.raw.count, "\(upgrade): more than one answer")
            }
            // The next connection is served as usual.
            #expect(try await RawHTTP.request("GET /v2/ HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port).status == 200)
        }
    }

    @Test("CONNECT gets a framed 405 UNSUPPORTED with Connection: close; behind another request, the connection closes after that one's answer")
    func connectIsRefusedFramed() async throws {
        let hostile = HostileUpstream()
        try await WharfInstance.behind(hostile) { wharf in
            for target in ["registry-1.docker.io:443", "/v2/"] {
                let raw = try await Self.exchange("CONNECT \(target) HTTP/1.1\r\nHost: \(target)\r\n\r\n", port: wharf.port)
                let answer = try #require(RawHTTP.parse(raw))
                #expect(answer.status == 405 && answer.header("connection")?.lowercased() == "close")
                #expect(answer.declaredLength == answer.body.count && answer.bodyText.contains("\"UNSUPPORTED\""), "\(answer.bodyText)")
                #expect(raw.count == answer.raw.count)
            }
            let raw = try await Self.exchange(
                "GET /v2/ HTTP/1.1\r\nHost: w\r\n\r\nCONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\nGET /v2/ HTTP/1.1\r\nHost: w\r\n\r\n", port: wharf.port)
            let first = try #require(RawHTTP.parse(raw))
            #expect(first.status == 200 && first.bodyText == "{}")
            #expect(raw.count == first.raw.count, "nothing after the first answer")
        }
    }
}
