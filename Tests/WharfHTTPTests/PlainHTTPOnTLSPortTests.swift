import Foundation
import NIOCore
import NIOEmbedded
import Testing
@testable import WharfHTTP

/// ``PlainHTTPOnTLSPort`` in an `EmbeddedChannel`: a plain request gets the 400 and a close, a TLS
/// record goes on unchanged and the handler leaves the pipeline.
@Suite(.tags(.unit))
struct PlainHTTPOnTLSPortTests {
    @Test("a plain HTTP request on the TLS port gets a plain 400 naming https:// and the connection closes")
    func plainRequestRefused() throws {
        let channel = EmbeddedChannel(handler: PlainHTTPOnTLSPort())
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(ByteBuffer(string: "GET /v2/ HTTP/1.1\r\nHost: m\r\n\r\n"))
        let sent = try #require(try channel.readOutbound(as: ByteBuffer.self))
        let text = String(buffer: sent)
        #expect(text.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(text.contains("\"code\":\"UNSUPPORTED\"") && text.contains("https://"))
        let head = text.components(separatedBy: "\r\n\r\n")
        #expect(head[0].contains("Content-Length: \(head[1].utf8.count)"))
        #expect(!channel.isActive)
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil, "nothing reaches the TLS handler")
    }

    @Test("a TLS record goes on to the TLS handler unchanged, and the handler leaves the pipeline")
    func tlsRecordPassesThrough() throws {
        let channel = EmbeddedChannel(handler: PlainHTTPOnTLSPort())
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        let hello = ByteBuffer(bytes: [0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        try channel.writeInbound(hello)
        #expect(try channel.readInbound(as: ByteBuffer.self) == hello)
        #expect(throws: ChannelPipelineError.self) { try channel.pipeline.syncOperations.handler(type: PlainHTTPOnTLSPort.self) }
        // Later bytes, whatever they start with, are the TLS handler's.
        try channel.writeInbound(ByteBuffer(string: "GET"))
        #expect(try channel.readInbound(as: ByteBuffer.self) == ByteBuffer(string: "GET"))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        #expect(channel.isActive)
        _ = try channel.finish()
    }

    @Test("only an uppercase ASCII letter counts as the start of a plain request")
    func firstByteRule() {
        for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "PRI"] {
            #expect(PlainHTTPOnTLSPort.startsPlainHTTP(UInt8(ascii: method.unicodeScalars.first!)))
        }
        for byte: UInt8 in [0x16, 0x15, 0x17, 0x80, 0x00, UInt8(ascii: "g"), UInt8(ascii: " "), 0xFF] {
            #expect(!PlainHTTPOnTLSPort.startsPlainHTTP(byte))
        }
    }
}
