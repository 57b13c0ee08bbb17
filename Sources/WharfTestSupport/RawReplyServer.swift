import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// A server on `127.0.0.1:<ephemeral port>` that answers each HTTP request head with raw bytes of the
/// caller's choosing: a malformed status line, a lying `Content-Length`, a broken chunked body, a
/// body after a `HEAD`'s answer, a close mid-head. ``HostileUpstream`` lies within well-formed HTTP;
/// this one breaks the protocol itself. Request bodies are not expected (a registry client sends
/// none) and are read as the start of the next head.
public final class RawReplyServer: Sendable {
    /// A request head, read loosely: the method, the target, and the header lines (names lowercased).
    public struct Request: Sendable {
        public let method: String
        public let target: String
        public let headers: [(name: String, value: String)]
        /// The target without its query.
        public var path: String { String(self.target.split(separator: "?", maxSplits: 1).first ?? "") }
        public func header(_ name: String) -> String? { self.headers.first { $0.name == name }?.value }
    }

    /// What the connection does once the reply's bytes are written.
    public enum After: Sendable {
        /// Reads the next request head.
        case keepOpen
        case close
        /// Neither reads nor closes until the client does (or ``stop()``).
        case hang
    }

    public struct Reply: Sendable {
        public var bytes: [UInt8]
        public var after: After
        public init(_ bytes: [UInt8], then after: After = .keepOpen) {
            self.bytes = bytes
            self.after = after
        }
    }

    public typealias Responder = @Sendable (Request) -> Reply

    /// Heads longer than this close the connection.
    static let maxHeadBytes = 64 << 10

    private struct State {
        var listener: (any Channel)?
        var connections: [ObjectIdentifier: any Channel] = [:]
        var requests: [Request] = []
    }

    private let responder: Responder
    private let state = Mutex(State())

    public init(responder: @escaping Responder) { self.responder = responder }

    /// The bound port; 0 before ``start()``.
    public var port: Int { self.state.withLock { $0.listener?.localAddress?.port ?? 0 } }
    /// How many request heads arrived.
    public var requestCount: Int { self.state.withLock { $0.requests.count } }
    /// Every request head that arrived, in order.
    public var requests: [Request] { self.state.withLock { $0.requests } }

    public func start() async throws {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Connection(server: self))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        self.state.withLock { $0.listener = channel }
    }

    /// Closes the listener and every connection, hanging ones included.
    public func stop() async {
        let (listener, connections) = self.state.withLock { state in
            defer { state.listener = nil }
            return (state.listener, Array(state.connections.values))
        }
        try? await listener?.close().get()
        for connection in connections { try? await connection.close().get() }
    }

    fileprivate func opened(_ channel: any Channel) { self.state.withLock { $0.connections[ObjectIdentifier(channel)] = channel } }
    fileprivate func closed(_ channel: any Channel) { _ = self.state.withLock { $0.connections.removeValue(forKey: ObjectIdentifier(channel)) } }

    fileprivate func reply(to request: Request) -> Reply {
        self.state.withLock { $0.requests.append(request) }
        return self.responder(request)
    }

    /// Reads heads off one connection and writes each reply in turn.
    private final class Connection: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        let server: RawReplyServer
        var pending = ByteBuffer()
        var done = false

        init(server: RawReplyServer) { self.server = server }

        func channelActive(context: ChannelHandlerContext) {
            self.server.opened(context.channel)
            context.fireChannelActive()
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.server.closed(context.channel)
            context.fireChannelInactive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !self.done else { return }
            var chunk = self.unwrapInboundIn(data)
            self.pending.writeBuffer(&chunk)
            while !self.done, let head = self.nextHead() {
                guard let request = Self.parse(head) else {
                    self.done = true
                    context.close(promise: nil)
                    return
                }
                let reply = self.server.reply(to: request)
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(bytes: reply.bytes)), promise: nil)
                switch reply.after {
                case .keepOpen: break
                case .close:
                    self.done = true
                    context.close(promise: nil)
                case .hang:
                    self.done = true
                }
            }
            if !self.done, self.pending.readableBytes > RawReplyServer.maxHeadBytes {
                self.done = true
                context.close(promise: nil)
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }

        /// The next whole head's bytes (without the blank line), consumed from `pending`.
        private func nextHead() -> String? {
            let view = self.pending.readableBytesView
            guard let end = view.firstRange(of: [13, 10, 13, 10]) else { return nil }
            let length = end.lowerBound - view.startIndex
            let head = self.pending.readString(length: length)
            self.pending.moveReaderIndex(forwardBy: 4)
            self.pending.discardReadBytes()
            return head
        }

        private static func parse(_ head: String) -> Request? {
            var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
            let requestLine = lines.isEmpty ? [] : lines.removeFirst().split(separator: " ")
            guard requestLine.count == 3 else { return nil }
            let headers = lines.compactMap { line -> (name: String, value: String)? in
                guard let colon = line.firstIndex(of: ":") else { return nil }
                return (line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: [" ", "\t"]))
            }
            return Request(method: String(requestLine[0]), target: String(requestLine[1]), headers: headers)
        }
    }
}
