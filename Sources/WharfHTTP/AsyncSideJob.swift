import NIOCore
import NIOHTTP1
import Synchronization

/// One whole request of a connection for the async side: what the task that answers it needs.
/// Made by ``ConnectionLifecycle`` on the event loop; the server starts a task for it.
struct AsyncSideJob: Sendable {
    /// What the connection's admission decided, read once when it was accepted.
    struct Admission: Sendable {
        /// Admitted into the reserve: probes (and, on the event loop, cache hits) only.
        var reserveOnly = false
        /// Completes when the client closed its side or the connection closed (nil: when it closed).
        var clientGone: EventLoopFuture<Void>?
    }

    let lifecycle: NIOLoopBound<ConnectionLifecycle>
    let channel: any Channel
    let admission: Admission
    let request: AsyncSideMachine.Request
    let gate: WriteGate

    var outbound: ResponseOutbound { ResponseOutbound(lifecycle: self.lifecycle, gate: self.gate) }
    var clientGone: EventLoopFuture<Void> { self.admission.clientGone ?? self.channel.closeFuture }

    /// The task answered the request and ends; `keepAlive` false: its response closes the
    /// connection (see ``ConnectionLifecycle/answered(keepAlive:)``).
    func answered(keepAlive: Bool) {
        let lifecycle = self.lifecycle
        lifecycle.eventLoop.execute { lifecycle.value.answered(keepAlive: keepAlive) }
    }

    /// The task failed (an aborted response, a closed connection): the connection closes now.
    func failed() {
        let lifecycle = self.lifecycle
        lifecycle.eventLoop.execute { lifecycle.value.failed() }
    }
}

/// How the async side writes a response to its connection, on the connection's event loop.
///
/// While the connection can take more, a write is handed to the event loop and returns at once
/// (the ``WriteGate`` lets one write be on its way); otherwise it returns once the write is done and
/// the connection has drained below its high-water mark (backpressure: a slow client holds at most
/// one write beyond it). Throws once the connection is closed.
struct ResponseOutbound: Sendable {
    let lifecycle: NIOLoopBound<ConnectionLifecycle>
    let gate: WriteGate

    func write(_ part: HTTPServerResponsePart) async throws {
        try await self.write(contentsOf: [part])
    }

    func write(contentsOf parts: [HTTPServerResponsePart]) async throws {
        let lifecycle = self.lifecycle, loop = lifecycle.eventLoop
        if self.gate.take() {
            loop.execute { _ = try? lifecycle.value.write(parts, waitForDrain: false) }
            return
        }
        try await loop.flatSubmit {
            do {
                return try lifecycle.value.write(parts, waitForDrain: true) ?? loop.makeSucceededVoidFuture()
            } catch {
                return loop.makeFailedFuture(error)
            }
        }.get()
    }
}

/// Whether the async side's next write may go to the event loop without waiting there (one write on
/// its way at a time). The task takes the gate for a write; the event loop opens it again once that
/// write is done and the connection can take more, and closes it for good when the connection closes.
final class WriteGate: Sendable {
    private static let open = 0, taken = 1, closed = 2
    private let value: Atomic<Int>

    init(open: Bool) { self.value = Atomic(open ? Self.open : Self.taken) }

    /// The task: true if it may write without waiting (the gate is now taken).
    func take() -> Bool { self.value.compareExchange(expected: Self.open, desired: Self.taken, ordering: .acquiringAndReleasing).exchanged }

    /// The event loop: the connection can take more (no effect once closed).
    func reopen() { _ = self.value.compareExchange(expected: Self.taken, desired: Self.open, ordering: .acquiringAndReleasing) }

    /// The event loop: the connection closed.
    func close() { self.value.store(Self.closed, ordering: .releasing) }
}
