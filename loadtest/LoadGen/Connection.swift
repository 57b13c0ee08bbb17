import NIOCore
import NIOHTTP1
import NIOPosix

/// Monotonic nanoseconds (CLOCK_MONOTONIC through NIO).
@inline(__always)
func nowNanos() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

/// What a connection reports about the response in flight. Called on the channel's event loop.
protocol ResponseDelegate: AnyObject {
    func responseHead(_ head: HTTPResponseHead)
    func responseBody(_ buffer: ByteBuffer)
    func responseEnd()
    /// The connection closed (or failed); `midResponse` when a request was in flight.
    func connectionClosed(midResponse: Bool, error: (any Error)?)
}

/// The last handler of a client pipeline: forwards response parts to its delegate.
/// Confined to the channel's event loop.
final class ResponseHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart

    weak var delegate: (any ResponseDelegate)?
    var inFlight = false
    private var reported = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            delegate?.responseHead(head)
        case .body(let buffer):
            delegate?.responseBody(buffer)
        case .end:
            inFlight = false
            delegate?.responseEnd()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        report(error: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        report(error: error)
        context.close(promise: nil)
    }

    private func report(error: (any Error)?) {
        guard !reported else { return }
        reported = true
        let mid = inFlight
        inFlight = false
        delegate?.connectionClosed(midResponse: mid, error: error)
    }
}

/// Target of the load: host, port, and the request headers every request carries.
struct Target: Sendable {
    let host: String
    let port: Int
    let hostHeader: String
    let extraHeaders: [(String, String)]

    init(url: String, accept: String?, headers: [String]) throws {
        guard url.hasPrefix("http://") else { throw LoadGenError.usage("only http:// URLs are supported: \(url)") }
        var rest = url.dropFirst("http://".count)
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        let hostPort = String(rest)
        if let colon = hostPort.lastIndex(of: ":"), let port = Int(hostPort[hostPort.index(after: colon)...]) {
            host = String(hostPort[..<colon])
            self.port = port
        } else {
            host = hostPort
            port = 80
        }
        hostHeader = hostPort
        var extra: [(String, String)] = []
        if let accept { extra.append(("Accept", accept)) }
        for header in headers {
            guard let colon = header.firstIndex(of: ":") else { throw LoadGenError.usage("header without ':': \(header)") }
            extra.append((
                String(header[..<colon]).trimmingSpaces(),
                String(header[header.index(after: colon)...]).trimmingSpaces()
            ))
        }
        extraHeaders = extra
    }

    func requestHead(path: String, accept: String? = nil) -> HTTPRequestHead {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: hostHeader)
        headers.add(name: "User-Agent", value: "wharf-loadgen")
        for (name, value) in extraHeaders where !(accept != nil && name.lowercased() == "accept") {
            headers.add(name: name, value: value)
        }
        if let accept { headers.add(name: "Accept", value: accept) }
        return HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
    }

    /// Connects a keep-alive HTTP/1.1 client channel on `loop` whose responses go to `handler`.
    func connect(on loop: any EventLoop, handler: ResponseHandler) -> EventLoopFuture<any Channel> {
        ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            // Big reads: bodies are counted and dropped, fewer syscalls per byte.
            .channelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 4096, initial: 65536, maximum: 1 << 20))
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(leftOverBytesStrategy: .dropBytes)
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: host, port: port)
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}

enum LoadGenError: Error, CustomStringConvertible {
    case usage(String)
    case http(String)

    var description: String {
        switch self {
        case .usage(let m): return m
        case .http(let m): return m
        }
    }
}
