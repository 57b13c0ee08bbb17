import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfMirror

/// Thrown to end a response early by closing the connection, so the client never sees it as complete.
struct AbortResponse: Error {
    let reason: String
}

/// Writes one response to the connection and remembers its status and size for the access log.
final class ResponseWriter {
    let outbound: ResponseOutbound
    let allocator: ByteBufferAllocator
    let isHead: Bool
    let keepAlive: Bool
    var status = 0
    var bytes: Int64 = 0
    /// How the cache answered, and the error code of a refusal: the request's ``RequestOutcome``.
    var cache: RequestOutcome.Cache = .none
    var errorCode: String?
    /// Where the request was routed, once it was.
    var routed: RoutedRequest?
    /// containerd's `ns` query parameter, echoed as `OCI-Namespace`.
    var namespace: String?
    /// Whose credentials this request's upstream requests carry (set by client authentication).
    var identity: ClientIdentity?
    /// Completes when the client closed its side or the connection closed (a client may go away while its response waits).
    var clientGone: EventLoopFuture<Void>?
    /// The connection is TLS (credentials may be sent on it).
    let isSecure: Bool
    /// The client's IP address, no port: what per-client limits (look-ups, failed logins) count under.
    let client: String
    /// The connection, to learn when the response's bytes have been written (nil: not known).
    let channel: (any Channel)?

    init(
        outbound: ResponseOutbound, allocator: ByteBufferAllocator, isHead: Bool, keepAlive: Bool,
        isSecure: Bool = false, client: String = "unknown", channel: (any Channel)? = nil
    ) {
        self.client = client
        self.channel = channel
        self.outbound = outbound
        self.allocator = allocator
        self.isHead = isHead
        self.keepAlive = keepAlive
        self.isSecure = isSecure
    }

    static func baseHeaders(keepAlive: Bool) -> HTTPHeaders {
        var h = HTTPHeaders()
        h.reserveCapacity(10)
        h.add(name: "Docker-Distribution-API-Version", value: "registry/2.0")
        if !keepAlive { h.add(name: "Connection", value: "close") }
        return h
    }

    func headers() -> HTTPHeaders {
        var h = Self.baseHeaders(keepAlive: self.keepAlive)
        if let ns = self.namespace { h.add(name: "OCI-Namespace", value: ns) }
        return h
    }

    /// A complete response with an in-memory body (omitted for HEAD, `Content-Length` kept).
    func send(status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer?) async throws {
        var headers = headers
        let length = body?.readableBytes ?? 0
        if body != nil || !headers.contains(name: "Content-Length") {
            headers.replaceOrAdd(name: "Content-Length", value: String(length))
        }
        self.status = Int(status.code)
        let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
        if let body, !self.isHead, body.readableBytes > 0 {
            try await self.outbound.write(contentsOf: [.head(head), .body(.byteBuffer(body)), .end(nil)])
            self.bytes += Int64(length)
        } else {
            try await self.outbound.write(contentsOf: [.head(head), .end(nil)])
        }
    }

    /// The head of a streamed response; follow with ``writeBody(_:)`` and ``end()``.
    func sendHead(status: HTTPResponseStatus, headers: HTTPHeaders) async throws {
        self.status = Int(status.code)
        try await self.outbound.write(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers)))
    }

    func writeBody(_ part: IOData) async throws {
        self.bytes += Int64(part.readableBytes)
        try await self.outbound.write(.body(part))
    }

    func end() async throws { try await self.outbound.write(.end(nil)) }

    func sendError(_ error: RegistryError) async throws {
        var h = self.headers()
        h.add(name: "Content-Type", value: "application/json; charset=utf-8")
        for (name, value) in error.headers { h.add(name: name, value: value) }
        if error.status == 405 { h.add(name: "Allow", value: "GET, HEAD") }
        if self.cache == .none { self.errorCode = error.code.name }
        try await self.send(status: .init(statusCode: error.status), headers: h, body: self.allocator.buffer(string: error.jsonBody))
    }
}
