import AsyncHTTPClient
import NIOCore
import NIOHTTP1

/// An answer from the upstream. `body` is nil when Wharf already consumed it (e.g. a final 401).
public struct UpstreamResponse: Sendable {
    public let status: Int
    public let headers: HTTPHeaders
    public let body: HTTPClientResponse.Body?
    /// When reading the body must have finished (manifests, tokens and other non-blob answers); nil
    /// for blob bodies, which may stream for hours.
    public let bodyDeadline: ContinuousClock.Instant?

    /// Reads the whole body, refusing more than `limit` bytes, and throws ``UpstreamUnreachable`` if
    /// the body has not arrived by ``bodyDeadline``.
    public func collect(upTo limit: Int) async throws -> ByteBuffer {
        guard let body else { return ByteBuffer() }
        guard let bodyDeadline else { return try await body.collect(upTo: limit) }
        return try await Self.collect(body, upTo: limit, deadline: bodyDeadline)
    }

    public var contentLength: Int64? { self.headers.first(name: "content-length").flatMap { Int64($0) } }

    /// Collects `body` unless `deadline` passes first; then the read is cancelled, which closes the
    /// connection, and ``UpstreamUnreachable`` is thrown.
    static func collect(_ body: HTTPClientResponse.Body, upTo limit: Int, deadline: ContinuousClock.Instant) async throws -> ByteBuffer {
        try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
            group.addTask { try await body.collect(upTo: limit) }
            group.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let buffer = first else {
                throw UpstreamUnreachable(description: "the upstream did not send the whole answer in time")
            }
            return buffer
        }
    }
}
