import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// How ``TamperingProxy`` alters `200` responses to `GET` requests whose path contains
/// `/blobs/` (``throttle(bytesPerSecond:)`` paces their `206` answers to ranged GETs too, each
/// response on its own). Every other response is passed through unchanged.
public enum TamperMode: Sendable, Hashable {
    /// Forward unchanged.
    case passthrough
    /// Same length, but the byte in the middle (offset `length / 2`) is XORed with 0xFF.
    case flipByte
    /// Send the upstream `Content-Length`, then about half the body, then close the
    /// connection cleanly (FIN).
    case truncate
    /// `Content-Length` and body both shortened by 1 KiB (to at least 0): a well-framed
    /// response with the wrong size.
    case shortBody
    /// Status 500 with a JSON `UNKNOWN` error body instead of the blob.
    case error500
    /// `200` with the full `Content-Length`, about half the body, then a TCP reset.
    case resetMidStream
    /// The whole body unchanged, but paced at about `bytesPerSecond` (a slow WAN link).
    case throttle(bytesPerSecond: Int)
}

/// One request seen by ``TamperingProxy``.
public struct ProxyRequestRecord: Sendable, Hashable {
    public let method: String
    /// The request target (path and query).
    public let uri: String
    /// The request's `Range` header, if it had one.
    public var range: String? = nil
}

/// An HTTP/1.1 reverse proxy on `127.0.0.1:<ephemeral port>` in front of an upstream base
/// URL, able to damage blob responses on demand.
///
/// Requests are forwarded with their method, path, query and headers (minus `Host` and
/// hop-by-hop headers); responses come back with their status and headers (including
/// `WWW-Authenticate`, `Location`, `Docker-Content-Digest`, `Content-Length`) and a
/// streamed body. Redirects are returned to the client, not followed. Request bodies
/// are buffered (they are small in pull tests); response bodies are streamed with
/// backpressure. An unreachable upstream yields 502.
public final class TamperingProxy: Sendable {
    /// The upstream base URL, e.g. `http://127.0.0.1:5000` (no trailing slash).
    public let upstream: String

    private struct State {
        var mode: TamperMode = .passthrough
        var manifestOverride: (status: Int, retryAfter: Int?)?
        var manifestDelay: Duration?
        var records: [ProxyRequestRecord] = []
        var client: HTTPClient?
        /// `Authorization` values seen so far, and those revoked (forwarded without credentials).
        var credentialsSeen: Set<String> = []
        var credentialsRevoked: Set<String> = []
        /// While set, every request is held unanswered (a hung upstream); the held ones wait here.
        var hanging = false
        var held: [CheckedContinuation<Void, Never>] = []
        var heldTotal = 0
        /// Docker Hub style pull budget: manifest answers carry `RateLimit-*`; each manifest GET spends one.
        var rateLimit: (limit: Int, remaining: Int, window: Int)?
    }

    private let state = Mutex(State())
    private let server: LoopbackHTTPServer

    public init(upstream: String) {
        var base = upstream
        while base.hasSuffix("/") { base.removeLast() }
        self.upstream = base
        let box = WeakProxy()
        self.server = LoopbackHTTPServer(connectionHandler: { connection in
            guard let proxy = box.value else { return }
            try await proxy.serve(connection)
        })
        box.value = self
    }

    public func start() async throws {
        let configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(10), read: .seconds(120)),
            decompression: .disabled)
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        state.withLock { $0.client = client }
        try await server.start()
    }

    /// Closes the listener and all client connections, then shuts the upstream client down.
    public func stop() async throws {
        self.setHanging(false)
        await server.stop()
        let client = state.withLock { state -> HTTPClient? in
            defer { state.client = nil }
            return state.client
        }
        try await client?.shutdown()
    }

    public var port: Int { server.port }
    /// `http://127.0.0.1:PORT`.
    public var url: String { "http://127.0.0.1:\(port)" }

    public var mode: TamperMode { state.withLock { $0.mode } }

    /// Changes the tampering for responses that start from now on.
    public func setMode(_ mode: TamperMode) {
        state.withLock { $0.mode = mode }
    }

    /// Every request received so far, oldest first.
    public var requests: [ProxyRequestRecord] { state.withLock { $0.records } }

    /// Number of requests received with `method` whose target contains `pathContaining`.
    /// Answers every manifest request (GET and HEAD) with `status` instead of asking the upstream
    /// (e.g. 429 with `Retry-After`, or 503); `nil` restores forwarding.
    public func setManifestOverride(status: Int?, retryAfter: Int? = nil) {
        state.withLock { $0.manifestOverride = status.map { ($0, retryAfter) } }
    }

    /// Revokes every credential seen so far, as an upstream that rotated its token key or cut a
    /// token's life short would: requests that still carry one are forwarded without it, so the
    /// upstream answers with its own `401` and challenge.
    public func revokeCredentialsSeen() {
        state.withLock { $0.credentialsRevoked.formUnion($0.credentialsSeen) }
    }

    /// Holds every manifest request (GET and HEAD) for `delay` before forwarding it (a slow or far
    /// upstream); `nil` forwards at once again.
    public func setManifestDelay(_ delay: Duration?) {
        state.withLock { $0.manifestDelay = delay }
    }

    /// `true`: from now on every request is accepted and held without an answer (an upstream that
    /// hangs). `false` (and ``stop()``) closes the held connections without answering and forwards
    /// later requests again.
    public func setHanging(_ hanging: Bool) {
        let release = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.hanging = hanging
            guard !hanging else { return [] }
            defer { state.held = [] }
            return state.held
        }
        for continuation in release { continuation.resume() }
    }

    /// Answers every manifest request as Docker Hub does: `RateLimit-Limit: limit;w=window` and
    /// `RateLimit-Remaining: remaining;w=window` on the answer, each manifest `GET` (not `HEAD`) spends
    /// one, and with none left a `GET` gets 429 `TOOMANYREQUESTS` without reaching the upstream.
    /// `nil` stops it.
    public func setRateLimit(limit: Int, remaining: Int, window: Int = 21600) {
        state.withLock { $0.rateLimit = (limit, remaining, window) }
    }

    public func clearRateLimit() {
        state.withLock { $0.rateLimit = nil }
    }

    /// What is left of the budget set by ``setRateLimit(limit:remaining:window:)``.
    public var rateLimitRemaining: Int? { state.withLock { $0.rateLimit?.remaining } }

    /// Requests held unanswered by ``setHanging(_:)`` so far.
    public var heldRequests: Int { state.withLock { $0.heldTotal } }

    public func count(method: String, pathContaining: String) -> Int {
        state.withLock { $0.records.filter { $0.method == method && $0.uri.contains(pathContaining) }.count }
    }

    // MARK: - Proxying

    private static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
        "te", "trailer", "transfer-encoding", "upgrade",
    ]

    private func serve(_ connection: LoopbackConnection) async throws {
        var iterator = connection.inbound.makeAsyncIterator()
        while let request = try await LoopbackConnection.nextRequest(&iterator) {
            let head = request.head, body = request.body
            let mode = state.withLock { state -> TamperMode in
                state.records.append(ProxyRequestRecord(method: head.method.rawValue, uri: head.uri, range: head.headers.first(name: "range")))
                return state.mode
            }
            let keepOpen = try await forward(head, body: body, mode: mode, connection: connection)
            if !keepOpen || !head.isKeepAlive { return }
        }
    }

    /// Forwards one request; returns whether the connection may carry another request.
    private func forward(
        _ head: HTTPRequestHead, body: ByteBuffer, mode: TamperMode, connection: LoopbackConnection
    ) async throws -> Bool {
        guard let client = state.withLock({ $0.client }) else { return false }
        if state.withLock({ $0.hanging }) {
            await withCheckedContinuation { continuation in
                let heldNow = state.withLock { state -> Bool in
                    guard state.hanging else { return false }
                    state.held.append(continuation)
                    state.heldTotal += 1
                    return true
                }
                if !heldNow { continuation.resume() }
            }
            return false  // released: close without an answer
        }
        if head.uri.contains("/manifests/"), let delay = state.withLock({ $0.manifestDelay }) {
            try await Task.sleep(for: delay)
        }
        // Docker Hub's budget: spent by manifest GETs, reported on every manifest answer.
        let isManifest = head.uri.contains("/manifests/"), isGET = head.method == .GET
        let budget: (headers: HTTPHeaders, exhausted: Bool)? = state.withLock { state in
            guard isManifest, var limit = state.rateLimit else { return nil }
            let exhausted = isGET && limit.remaining == 0
            if isGET, limit.remaining > 0 { limit.remaining -= 1 }
            state.rateLimit = limit
            let headers = HTTPHeaders([
                ("RateLimit-Limit", "\(limit.limit);w=\(limit.window)"), ("RateLimit-Remaining", "\(limit.remaining);w=\(limit.window)"),
            ])
            return (headers, exhausted)
        }
        if let budget, budget.exhausted {
            var headers = budget.headers
            headers.add(name: "Retry-After", value: "3600")
            let reply = LoopbackHTTPResponse.json(
                .tooManyRequests, #"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#, headers: headers)
            try await connection.send(reply, for: head)
            return true
        }
        if head.uri.contains("/manifests/"), let override = state.withLock({ $0.manifestOverride }) {
            var headers: HTTPHeaders = [:]
            if let r = override.retryAfter { headers.add(name: "Retry-After", value: String(r)) }
            let reply = LoopbackHTTPResponse.json(
                HTTPResponseStatus(statusCode: override.status), #"{"errors":[{"code":"TOOMANYREQUESTS","message":"tampering proxy override"}]}"#,
                headers: headers)
            try await connection.send(reply, for: head)
            return true
        }
        var request = HTTPClientRequest(url: upstream + head.uri)
        request.method = head.method
        let revoked = state.withLock { state -> Set<String> in
            state.credentialsSeen.formUnion(head.headers["authorization"])
            return state.credentialsRevoked
        }
        for (name, value) in head.headers {
            let lower = name.lowercased()
            if lower == "host" || lower == "content-length" || Self.hopByHop.contains(lower) { continue }
            if lower == "authorization" && revoked.contains(value) { continue }
            request.headers.add(name: name, value: value)
        }
        if body.readableBytes > 0 || [.POST, .PUT, .PATCH].contains(head.method) {
            request.body = .bytes(body)
        }

        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .seconds(300))
        } catch {
            let reply = LoopbackHTTPResponse.json(
                .badGateway, #"{"errors":[{"code":"UNKNOWN","message":"tampering proxy: upstream failed"}]}"#)
            try await connection.send(reply, for: head)
            return true
        }

        var headers = HTTPHeaders()
        for (name, value) in response.headers where !Self.hopByHop.contains(name.lowercased()) {
            headers.add(name: name, value: value)
        }
        for (name, value) in budget?.headers ?? HTTPHeaders() { headers.replaceOrAdd(name: name, value: value) }
        let length = headers.first(name: "content-length").flatMap { Int($0) }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        var tamper = head.method == .GET && response.status == .ok && path.contains("/blobs/")
        if case .throttle = mode, head.method == .GET, response.status == .partialContent, path.contains("/blobs/") { tamper = true }
        var effective = tamper ? mode : .passthrough
        if effective == .shortBody && length == nil { effective = .passthrough }
        let responseHead = { (headers: HTTPHeaders) in
            HTTPResponseHead(version: head.version, status: response.status, headers: headers)
        }

        switch effective {
        case .error500:
            let reply = LoopbackHTTPResponse.json(
                .internalServerError,
                #"{"errors":[{"code":"UNKNOWN","message":"tampering proxy: injected error","detail":null}]}"#)
            try await connection.send(reply, for: head)
            return true  // the upstream body is dropped, which cancels that request

        case .shortBody:
            let shortened = max(0, (length ?? 0) - 1024)
            headers.replaceOrAdd(name: "content-length", value: String(shortened))
            try await connection.write(.head(responseHead(headers)))
            try await stream(response.body, limit: shortened, to: connection)
            try await connection.write(.end(nil))
            return true

        case .passthrough, .flipByte, .throttle:
            try await connection.write(.head(responseHead(headers)))
            if head.method == .HEAD {
                try await connection.write(.end(nil))
                return true
            }
            let flipAt = effective == .flipByte ? (length ?? 0) / 2 : nil
            var pace: Int?
            if case .throttle(let rate) = effective { pace = rate }
            do {
                try await stream(response.body, limit: nil, flipAt: flipAt, pace: pace, to: connection)
            } catch {
                // The upstream body failed part way: the client must not see a complete response.
                await connection.reset()
                return false
            }
            try await connection.write(.end(nil))
            return true

        case .truncate, .resetMidStream:
            try await connection.write(.head(responseHead(headers)))
            let half = (length ?? 0) / 2
            try? await stream(response.body, limit: half, to: connection)
            if effective == .truncate {
                try? await connection.channel.close().get()
            } else {
                // Let the bytes already written leave before the reset discards the send queue.
                try? await Task.sleep(for: .milliseconds(50))
                await connection.reset()
            }
            return false
        }
    }

    /// Copies up to `limit` body bytes (all when `nil`) to the client, XOR-ing the byte at
    /// offset `flipAt` with 0xFF, at about `pace` bytes a second if set. Stops reading the upstream
    /// once `limit` is reached.
    private func stream(
        _ body: HTTPClientResponse.Body, limit: Int?, flipAt: Int? = nil, pace: Int? = nil, to connection: LoopbackConnection
    ) async throws {
        var offset = 0
        if limit == 0 { return }
        for try await var chunk in body {
            if let limit, offset + chunk.readableBytes > limit {
                chunk = chunk.getSlice(at: chunk.readerIndex, length: limit - offset) ?? ByteBuffer()
            }
            if let flipAt, flipAt >= offset, flipAt < offset + chunk.readableBytes {
                let index = chunk.readerIndex + (flipAt - offset)
                if let byte = chunk.getInteger(at: index, as: UInt8.self) {
                    chunk.setInteger(byte ^ 0xFF, at: index)
                }
            }
            offset += chunk.readableBytes
            if let pace {
                // Slices of a tenth of a second each (this simulates a slow link; it synchronises nothing).
                let slice = max(1, pace / 10)
                while let part = chunk.readSlice(length: min(slice, chunk.readableBytes)), part.readableBytes > 0 {
                    try await connection.write(.body(.byteBuffer(part)))
                    try await Task.sleep(for: .milliseconds(Int64(part.readableBytes) * 1000 / Int64(pace)))
                }
            } else if chunk.readableBytes > 0 {
                try await connection.write(.body(.byteBuffer(chunk)))
            }
            if let limit, offset >= limit { return }
        }
    }
}

/// Breaks the proxy ↔ handler reference cycle.
private final class WeakProxy: @unchecked Sendable {
    private let lock = Mutex<Void>(())
    private weak var _value: TamperingProxy?
    var value: TamperingProxy? {
        get { lock.withLock { _ in _value } }
        set { lock.withLock { _ in _value = newValue } }
    }
}
