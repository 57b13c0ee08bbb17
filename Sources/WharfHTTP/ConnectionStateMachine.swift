/// The life of one client connection, as a value: who may answer the next request, what is in
/// flight, and when the connection closes. No I/O: ``ConnectionLifecycle`` feeds it events from the
/// pipeline and carries out the actions it returns.
///
/// Requests are answered either on the event loop (``HitPath``: a cache hit, written at once; a big
/// one is a sendfile still in flight afterwards) or on the async side (everything else). The event
/// loop may answer only while nothing is with the async side, so responses stay in request order.
///
/// ```
///  idle ──hit sendfile / request to the async side──► busy ──all finished──► idle
///   │                                                  │
///   ├──response without keep-alive──► closing (answer nothing more; the writer closes)
///   └──quiesce (graceful shutdown)───► quiescing: answer nothing new, close once in flight is done
/// ```
struct ConnectionStateMachine: Equatable {
    enum State: Equatable {
        /// Nothing in flight: the event loop may answer a hit.
        case idle
        /// Requests with the async side and/or hit sendfiles in flight.
        case busy(asyncRequests: Int, hitSends: Int)
        /// A response without keep-alive was written: later requests are dropped; whoever wrote it closes.
        case closing
        /// Graceful shutdown: what is in flight finishes, nothing new is answered, then the connection closes.
        case quiescing(asyncRequests: Int, hitSends: Int)
        case closed
    }

    /// What the caller must do.
    enum Action: Equatable {
        case none
        /// Close once every byte queued so far has been written.
        case closeWhenFlushed
    }

    private(set) var state: State = .idle

    /// The event loop may answer the next request itself.
    var mayAnswerOnLoop: Bool { self.state == .idle }

    /// Nothing more is answered on this connection (closing, quiescing or closed).
    var isEnding: Bool {
        switch self.state {
        case .idle, .busy: false
        case .closing, .quiescing, .closed: true
        }
    }

    /// A request head went to the async side.
    mutating func requestForwarded() {
        switch self.state {
        case .idle: self.state = .busy(asyncRequests: 1, hitSends: 0)
        case .busy(let a, let h): self.state = .busy(asyncRequests: a + 1, hitSends: h)
        case .quiescing(let a, let h): self.state = .quiescing(asyncRequests: a + 1, hitSends: h)
        case .closing, .closed: break
        }
    }

    /// The async side wrote the end of a response.
    mutating func asyncResponseEnded() -> Action {
        switch self.state {
        case .busy(let a, let h): self.state = Self.settle(asyncRequests: a - 1, hitSends: h)
        case .quiescing(let a, let h): return self.quiescing(asyncRequests: a - 1, hitSends: h)
        case .idle, .closing, .closed: break
        }
        return .none
    }

    /// The event loop answered a hit whose body goes out as a sendfile still in flight.
    mutating func hitSendStarted() {
        switch self.state {
        case .idle: self.state = .busy(asyncRequests: 0, hitSends: 1)
        case .busy(let a, let h): self.state = .busy(asyncRequests: a, hitSends: h + 1)
        case .quiescing(let a, let h): self.state = .quiescing(asyncRequests: a, hitSends: h + 1)
        case .closing, .closed: break
        }
    }

    /// A hit's sendfile finished (or failed).
    mutating func hitSendFinished() -> Action {
        switch self.state {
        case .busy(let a, let h): self.state = Self.settle(asyncRequests: a, hitSends: h - 1)
        case .quiescing(let a, let h): return self.quiescing(asyncRequests: a, hitSends: h - 1)
        case .idle, .closing, .closed: break
        }
        return .none
    }

    /// A response without keep-alive was written (its writer closes the connection after it).
    mutating func responseWithoutKeepAlive() {
        if self.state != .closed { self.state = .closing }
    }

    /// Graceful shutdown began: close now if idle (after queued bytes), else when in flight is done.
    mutating func quiesce() -> Action {
        switch self.state {
        case .idle: return self.quiescing(asyncRequests: 0, hitSends: 0)
        case .busy(let a, let h): self.state = .quiescing(asyncRequests: a, hitSends: h)
        case .closing, .quiescing, .closed: break
        }
        return .none
    }

    mutating func channelClosed() { self.state = .closed }

    private static func settle(asyncRequests: Int, hitSends: Int) -> State {
        asyncRequests <= 0 && hitSends <= 0 ? .idle : .busy(asyncRequests: max(0, asyncRequests), hitSends: max(0, hitSends))
    }

    private mutating func quiescing(asyncRequests: Int, hitSends: Int) -> Action {
        guard asyncRequests <= 0, hitSends <= 0 else {
            self.state = .quiescing(asyncRequests: asyncRequests, hitSends: hitSends)
            return .none
        }
        self.state = .closed
        return .closeWhenFlushed
    }
}
