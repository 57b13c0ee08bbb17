import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution
import Synchronization

/// A registry that lies, on `127.0.0.1:<ephemeral port>` (or a Unix socket): each path gets a
/// scripted answer — a redirect anywhere, a 500, a 429 with any `Retry-After`, a late answer, a body dribbled a
/// byte at a time, or a body that stalls until released. Unscripted `/v2/` answers `200 {}`; any
/// other unscripted path answers 404 with an OCI `MANIFEST_UNKNOWN` error. Every request is recorded.
public final class HostileUpstream: Sendable {
    /// What the server answers on a path.
    public enum Behaviour: Sendable {
        /// A buffered answer.
        case respond(LoopbackHTTPResponse)
        /// A buffered answer, begun only `delay` after the request (a slow upstream).
        case late(LoopbackHTTPResponse, after: Duration)
        /// `status` (a 3xx) with `Location: location` and an empty body.
        case redirect(to: String, status: HTTPResponseStatus = .temporaryRedirect)
        /// The head with the full `Content-Length`, then the body one byte every `interval`.
        case dribble(LoopbackHTTPResponse, every: Duration)
        /// The head with the full `Content-Length` and the first half of the body, then nothing until
        /// ``releaseStalled()`` (the rest is sent) or the connection closes.
        case stall(LoopbackHTTPResponse)

        /// `status` with a JSON OCI error body.
        public static func status(_ status: HTTPResponseStatus, headers: HTTPHeaders = [:]) -> Behaviour {
            .respond(.json(status, #"{"errors":[{"code":"UNKNOWN","message":"scripted \#(status.code)"}]}"#, headers: headers))
        }

        /// `429 Too Many Requests` with `Retry-After: seconds` (and any other headers).
        public static func rateLimited(retryAfter seconds: Int, headers: HTTPHeaders = [:]) -> Behaviour {
            var h = headers
            h.replaceOrAdd(name: "Retry-After", value: String(seconds))
            return .status(.tooManyRequests, headers: h)
        }

        /// `200` with a manifest body, its media type and its digest.
        public static func manifest(_ bytes: [UInt8], mediaType: String = "application/vnd.oci.image.manifest.v1+json") -> Behaviour {
            .respond(LoopbackHTTPResponse(
                status: .ok, headers: ["Content-Type": mediaType, "Docker-Content-Digest": Digest.sha256(of: bytes).description],
                body: ByteBuffer(bytes: bytes)))
        }
    }

    private struct State {
        var exact: [String: Behaviour] = [:]
        var prefixes: [(prefix: String, behaviour: Behaviour)] = []
        var requests: [LoopbackHTTPRequest] = []
        var released = false
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())
    private let server: LoopbackHTTPServer

    public init() {
        let box = WeakHostileUpstream()
        self.server = LoopbackHTTPServer(connectionHandler: { connection in
            guard let upstream = box.value else { return }
            try await upstream.serve(connection)
        })
        box.value = self
    }

    /// Listens on `127.0.0.1:0`, or on the Unix socket at `unixSocketPath`.
    public func start(unixSocketPath: String? = nil) async throws {
        try await self.server.start(unixSocketPath: unixSocketPath)
    }

    /// Closes the listener and every connection (stalled ones included).
    public func stop() async {
        self.releaseStalled()
        await self.server.stop()
    }

    public var port: Int { self.server.port }
    public var url: String { "http://127.0.0.1:\(self.port)" }

    /// Answers requests for exactly `path` (without the query) with `behaviour`, whatever the method.
    public func script(_ path: String, _ behaviour: Behaviour) {
        self.state.withLock { $0.exact[path] = behaviour }
    }

    /// Answers requests whose path starts with `prefix` (and has no exact script) with `behaviour`.
    public func script(prefix: String, _ behaviour: Behaviour) {
        self.state.withLock { $0.prefixes.append((prefix, behaviour)) }
    }

    /// Lets every stalled body (and any later one) finish.
    public func releaseStalled() {
        let waiting = self.state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.released = true
            defer { s.waiting = [] }
            return s.waiting
        }
        for w in waiting { w.resume() }
    }

    /// Every request received so far, in order.
    public var requests: [LoopbackHTTPRequest] { self.state.withLock { $0.requests } }

    /// How many requests had a path starting with `prefix`.
    public func count(pathPrefix prefix: String) -> Int {
        self.state.withLock { $0.requests.filter { $0.path.hasPrefix(prefix) }.count }
    }

    // MARK: Serving

    private func behaviour(for path: String) -> Behaviour {
        self.state.withLock { s in
            if let b = s.exact[path] { return b }
            if let b = s.prefixes.last(where: { path.hasPrefix($0.prefix) })?.behaviour { return b }
            if path == "/v2/" || path == "/v2" { return .respond(.json(.ok, "{}")) }
            return .respond(.json(.notFound, #"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#))
        }
    }

    private func serve(_ connection: LoopbackConnection) async throws {
        var iterator = connection.inbound.makeAsyncIterator()
        while let request = try await LoopbackConnection.nextRequest(&iterator) {
            let head = request.head
            self.state.withLock { $0.requests.append(request) }
            switch self.behaviour(for: request.path) {
            case .respond(let response):
                try await connection.send(response, for: head)
            case .late(let response, let delay):
                try await Task.sleep(for: delay)
                try await connection.send(response, for: head)
            case .redirect(let location, let status):
                try await connection.send(LoopbackHTTPResponse(status: status, headers: ["Location": location]), for: head)
            case .dribble(let response, let interval):
                try await self.writeHead(response, for: head, on: connection)
                if head.method != .HEAD {
                    for byte in response.body.readableBytesView {
                        try await Task.sleep(for: interval)
                        try await connection.write(.body(.byteBuffer(ByteBuffer(bytes: [byte]))))
                    }
                }
                try await connection.write(.end(nil))
            case .stall(let response):
                try await self.writeHead(response, for: head, on: connection)
                if head.method != .HEAD {
                    var rest = response.body
                    if let first = rest.readSlice(length: rest.readableBytes / 2), first.readableBytes > 0 {
                        try await connection.write(.body(.byteBuffer(first)))
                    }
                    await self.waitForRelease()
                    if rest.readableBytes > 0 { try await connection.write(.body(.byteBuffer(rest))) }
                }
                try await connection.write(.end(nil))
            }
            if !head.isKeepAlive { return }
        }
    }

    private func writeHead(_ response: LoopbackHTTPResponse, for request: HTTPRequestHead, on connection: LoopbackConnection) async throws {
        var headers = response.headers
        headers.replaceOrAdd(name: "content-length", value: String(response.body.readableBytes))
        try await connection.write(.head(HTTPResponseHead(version: request.version, status: response.status, headers: headers)))
    }

    private func waitForRelease() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = self.state.withLock { s -> Bool in
                if s.released { return true }
                s.waiting.append(c)
                return false
            }
            if resumeNow { c.resume() }
        }
    }
}

/// Breaks the server → handler → upstream cycle; the lock guards the weak reference.
private final class WeakHostileUpstream: @unchecked Sendable {
    private let lock = Mutex<Void>(())
    private weak var _value: HostileUpstream?
    var value: HostileUpstream? {
        get { self.lock.withLock { _ in self._value } }
        set { self.lock.withLock { _ in self._value = newValue } }
    }
}
