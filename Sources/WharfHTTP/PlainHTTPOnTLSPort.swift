import NIOCore

/// In front of the TLS handler: a connection whose first byte starts a plain HTTP request (an
/// uppercase ASCII letter, as in `GET`) rather than a TLS record gets a plain-HTTP 400 with an OCI
/// error saying to use `https://`, and is closed; a client pointed at the wrong scheme (a
/// `registry-mirrors` entry with `http://` for a TLS listener) then sees why, instead of an
/// unexplained EOF. Any other first byte goes on to the TLS handler, and this handler leaves the
/// pipeline: it looks at one byte per connection.
final class PlainHTTPOnTLSPort: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// The whole answer: a plain-HTTP 400 that closes the connection.
    static let response: String = {
        let body = #"{"errors":[{"code":"UNSUPPORTED","message":"plain HTTP request sent to an HTTPS port: use https://","detail":{}}]}"#
        return "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\n"
            + "Docker-Distribution-API-Version: registry/2.0\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
    }()

    private var refused = false

    /// True when `byte`, the first of a connection, starts an HTTP request line (every method is
    /// uppercase letters); a TLS record starts with its content type (22 for a handshake).
    static func startsPlainHTTP(_ byte: UInt8) -> Bool { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if self.refused { return }  // the rest of a refused request: dropped
        let bytes = self.unwrapInboundIn(data)
        guard let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) else { return }
        guard Self.startsPlainHTTP(first) else {
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        self.refused = true
        let channel = context.channel
        context.writeAndFlush(NIOAny(channel.allocator.buffer(string: Self.response))).whenComplete { _ in channel.close(promise: nil) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if !self.refused { context.fireChannelReadComplete() }
    }
}
