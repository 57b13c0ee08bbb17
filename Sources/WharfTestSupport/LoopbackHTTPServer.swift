import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// One accepted HTTP/1.1 connection of a ``LoopbackHTTPServer``.
///
/// Read request parts from ``inbound``; write response parts with ``write(_:)``, which
/// returns once the part has been written to the socket (so closing afterwards never
/// drops it).
public struct LoopbackConnection {
    /// The NIO channel of the connection (for socket options or an abrupt close).
    public let channel: any Channel
    /// Request heads, body chunks and ends, in order.
    public let inbound: NIOAsyncChannelInboundStream<HTTPServerRequestPart>

    /// Writes and flushes one response part and waits until it is written.
    public func write(_ part: HTTPServerResponsePart) async throws {
        try await channel.writeAndFlush(part).get()
    }

    /// Writes a whole buffered response. A HEAD request gets the headers only.
    public func send(_ response: LoopbackHTTPResponse, for request: HTTPRequestHead) async throws {
        var headers = response.headers
        if !headers.contains(name: "content-length") {
            headers.replaceOrAdd(name: "content-length", value: String(response.body.readableBytes))
        }
        if !request.isKeepAlive {
            headers.replaceOrAdd(name: "connection", value: "close")
        }
        try await write(.head(HTTPResponseHead(version: request.version, status: response.status, headers: headers)))
        if request.method != .HEAD && response.body.readableBytes > 0 {
            try await write(.body(.byteBuffer(response.body)))
        }
        try await write(.end(nil))
    }

    /// Reads the next whole request (head and body) from `iterator`; nil when the connection ends.
    public static func nextRequest(
        _ iterator: inout NIOAsyncChannelInboundStream<HTTPServerRequestPart>.AsyncIterator
    ) async throws -> LoopbackHTTPRequest? {
        while let part = try await iterator.next() {
            guard case .head(let head) = part else { continue }
            var body = ByteBuffer()
            reading: while let part = try await iterator.next() {
                switch part {
                case .body(var chunk): body.writeBuffer(&chunk)
                case .end: break reading
                case .head: throw FixtureError.invalid("request head inside a request body")
                }
            }
            return LoopbackHTTPRequest(head: head, body: body)
        }
        return nil
    }

    /// Closes the connection with a TCP reset (SO_LINGER 0) instead of a FIN.
    public func reset() async {
        if let provider = channel as? any SocketOptionProvider {
            try? await provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
        }
        try? await channel.close().get()
    }
}

/// A request collected in full by ``LoopbackHTTPServer``'s buffered mode.
public struct LoopbackHTTPRequest: Sendable {
    public let head: HTTPRequestHead
    public let body: ByteBuffer

    public var method: HTTPMethod { head.method }
    public var headers: HTTPHeaders { head.headers }
    /// The path part of the request target, still percent-encoded.
    public var path: String { String(head.uri.split(separator: "?", maxSplits: 1).first ?? "") }

    /// Query parameters in order, repeated names kept; `+` and `%XX` are decoded.
    public var queryItems: [(name: String, value: String)] {
        guard let query = head.uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return [] }
        return query.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String {
                let spaced = s.replacingOccurrences(of: "+", with: " ")
                return spaced.removingPercentEncoding ?? spaced
            }
            return (decode(parts[0]), parts.count > 1 ? decode(parts[1]) : "")
        }
    }
}

/// A response for ``LoopbackHTTPServer``'s buffered mode.
public struct LoopbackHTTPResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: ByteBuffer

    public init(status: HTTPResponseStatus, headers: HTTPHeaders = [:], body: ByteBuffer = ByteBuffer()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A response with a JSON body and `Content-Type: application/json`.
    public static func json(_ status: HTTPResponseStatus, _ body: String, headers: HTTPHeaders = [:]) -> Self {
        var headers = headers
        headers.replaceOrAdd(name: "content-type", value: "application/json")
        return Self(status: status, headers: headers, body: ByteBuffer(string: body))
    }
}

/// A small HTTP/1.1 server on `127.0.0.1:<ephemeral port>` built on `NIOAsyncChannel`.
///
/// Either hand it a per-connection handler (full control, streaming) or a buffered
/// request → response closure. ``stop()`` closes the listener and every open
/// connection and waits for all handlers to return.
public final class LoopbackHTTPServer: Sendable {
    /// Serves one connection; return (or throw) to close it.
    public typealias ConnectionHandler = @Sendable (LoopbackConnection) async throws -> Void
    /// Produces the response for one fully read request.
    public typealias RequestHandler = @Sendable (LoopbackHTTPRequest) async -> LoopbackHTTPResponse

    private struct State {
        var port: Int?
        var listener: (any Channel)?
        var task: Task<Void, Never>?
        var connections: [ObjectIdentifier: any Channel] = [:]
        var stopped = false
    }

    private let handler: ConnectionHandler
    private let state = Mutex(State())

    public init(connectionHandler: @escaping ConnectionHandler) {
        self.handler = connectionHandler
    }

    /// A server that reads each request in full and answers it with `requestHandler`,
    /// keeping connections alive as HTTP/1.1 allows.
    public convenience init(requestHandler: @escaping RequestHandler) {
        self.init(connectionHandler: { connection in
            try await Self.serveBuffered(connection, requestHandler)
        })
    }

    /// The bound port; 0 before ``start()``.
    public var port: Int { state.withLock { $0.port ?? 0 } }

    /// Binds `127.0.0.1:0` and starts accepting connections.
    public func start() async throws {
        try await self.start(unixSocketPath: nil)
    }

    /// Listens on a Unix domain socket at `path` (replacing a stale socket file) instead of TCP;
    /// ``port`` stays 0. Async-http-client reaches it as `http+unix://<percent-encoded path>/…`.
    public func start(unixSocketPath path: String?) async throws {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        let initializer: @Sendable (any Channel) -> EventLoopFuture<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>> = { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
            }
        }
        let server = if let path {
            try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true, childChannelInitializer: initializer)
        } else {
            try await bootstrap.bind(host: "127.0.0.1", port: 0, childChannelInitializer: initializer)
        }
        let port = path == nil ? server.channel.localAddress?.port ?? 0 : 0
        let task = Task { await self.acceptLoop(server) }
        let alreadyStopped = state.withLock { state -> Bool in
            state.port = port
            state.listener = server.channel
            state.task = task
            return state.stopped
        }
        if alreadyStopped { await stop() }
    }

    /// Stops accepting, closes every connection and waits for the handlers to finish.
    public func stop() async {
        let (listener, connections, task) = state.withLock { state in
            state.stopped = true
            let result = (state.listener, Array(state.connections.values), state.task)
            state.listener = nil
            state.task = nil
            return result
        }
        try? await listener?.close().get()
        for connection in connections {
            try? await connection.close().get()
        }
        task?.cancel()
        await task?.value
    }

    private func acceptLoop(_ server: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>) async {
        let handler = self.handler
        try? await withThrowingDiscardingTaskGroup { group in
            try await server.executeThenClose { inbound in
                for try await connection in inbound {
                    let channel = connection.channel
                    let key = ObjectIdentifier(channel)
                    let accepted = state.withLock { state -> Bool in
                        guard !state.stopped else { return false }
                        state.connections[key] = channel
                        return true
                    }
                    guard accepted else {
                        try? await channel.close().get()
                        continue
                    }
                    group.addTask {
                        try? await connection.executeThenClose { inbound, _ in
                            try await handler(LoopbackConnection(channel: channel, inbound: inbound))
                        }
                        _ = self.state.withLock { $0.connections.removeValue(forKey: key) }
                    }
                }
            }
        }
    }

    private static func serveBuffered(_ connection: LoopbackConnection, _ handler: RequestHandler) async throws {
        var iterator = connection.inbound.makeAsyncIterator()
        while let request = try await LoopbackConnection.nextRequest(&iterator) {
            let head = request.head
            let response = await handler(request)
            try await connection.send(response, for: head)
            if !head.isKeepAlive { return }
        }
    }
}
