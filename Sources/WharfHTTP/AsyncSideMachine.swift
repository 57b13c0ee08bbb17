import NIOHTTP1

/// One connection's requests for the async side, as a value: the whole requests waiting, whether a
/// task is answering them, and whether the socket may be read. No I/O: ``ConnectionLifecycle`` feeds
/// it the decoded request parts and the task's progress, and carries out what it returns.
///
/// A task exists only while a request is with the async side: a whole request starts one, requests
/// behind it wait, and when it has answered, the next one waiting starts the next task. A connection
/// that is idle, or whose requests were all cache hits answered on the event loop, holds no task and
/// no queue.
///
/// ```
///  idle ──whole request: start a task──► answering ──answered, none waiting──► idle
///   │                                     │    ▲
///   │                                     └────┘ answered: start the next one waiting
///   └─input closed, response closing, ────┴──► finished (nothing more is answered)
///     or connection closed
/// ```
struct AsyncSideMachine {
    /// A request for the async side: its head and how much body came with it (bodies are counted, not kept).
    struct Request: Equatable {
        var head: HTTPRequestHead
        var bodyBytes = 0
        /// The body passed ``AsyncSideMachine/maxBodyBytes``: the connection is closed when its turn comes.
        var bodyTooLarge: Bool { self.bodyBytes > AsyncSideMachine.maxBodyBytes }
    }

    enum State: Equatable {
        /// No task: nothing is with the async side.
        case idle
        /// A task is answering a request; ``waiting`` holds the whole ones behind it.
        case answering
        /// Nothing more is answered: the client closed its side, a response closes the connection, or it closed.
        case finished
    }

    /// What ``end()`` asks for.
    enum EndAction: Equatable {
        case none
        /// Start a task to answer this request (none is running).
        case start(Request)
    }

    /// What follows a task's answer (``answered()``).
    enum AnsweredAction: Equatable {
        /// Start a task for this request, the next one waiting; `resumeReading`: a read held back
        /// by the queue's bound is due now.
        case start(Request, resumeReading: Bool)
        /// None waits. `closeWhenFlushed`: the client has closed its side, so close the connection
        /// once every queued byte is written.
        case stop(closeWhenFlushed: Bool)
    }

    /// Requests beyond this 1 MiB of body are not answered: the connection is closed.
    static let maxBodyBytes = 1 << 20
    /// While this many whole requests wait, the socket is not read (a client pipelining many misses).
    static let highWatermark = 16
    /// A read held back resumes once no more than this many wait.
    static let lowWatermark = 4

    private(set) var state: State = .idle
    /// Whole requests behind the one being answered, in order.
    private(set) var waiting: [Request] = []
    /// The request whose parts are arriving.
    private var partial: Request?
    /// The client closed its side while a task was answering: close once it is done.
    private var closeWhenDone = false
    /// A read was held back while the queue was full.
    private(set) var readHeld = false

    /// A request head arrived (a head without an end before it replaces that request).
    mutating func head(_ head: HTTPRequestHead) {
        guard self.state != .finished else { return }
        self.partial = Request(head: head)
    }

    mutating func body(_ bytes: Int) {
        self.partial?.bodyBytes += bytes
    }

    /// The request's end arrived: it is whole.
    mutating func end() -> EndAction {
        guard let request = self.partial else { return .none }
        self.partial = nil
        switch self.state {
        case .idle:
            self.state = .answering
            return .start(request)
        case .answering:
            self.waiting.append(request)
            return .none
        case .finished:
            return .none
        }
    }

    /// The task answered its request and keeps the connection open: start the next one, or stop.
    mutating func answered() -> AnsweredAction {
        guard self.state == .answering else { return .stop(closeWhenFlushed: false) }
        guard !self.waiting.isEmpty else {
            self.waiting = []  // no storage kept while idle
            if self.closeWhenDone {
                self.state = .finished
                return .stop(closeWhenFlushed: true)
            }
            self.state = .idle
            return .stop(closeWhenFlushed: false)
        }
        let next = self.waiting.removeFirst()
        let resume = self.readHeld && self.waiting.count <= Self.lowWatermark
        if resume { self.readHeld = false }
        return .start(next, resumeReading: resume)
    }

    /// More decoded requests may join the queue (once nothing more is answered, any may: they are dropped).
    var hasRoom: Bool { self.state == .finished || self.waiting.count < Self.highWatermark }

    /// The socket may be read now (else the read is held until the queue drains).
    mutating func mayRead() -> Bool {
        guard self.waiting.count >= Self.highWatermark else { return true }
        self.readHeld = true
        return false
    }

    /// The client closed its side (or the connection failed): no more requests come. True: close
    /// the connection once its queued bytes are written, now (no task is answering).
    mutating func inputClosed() -> Bool {
        self.partial = nil
        switch self.state {
        case .idle:
            self.state = .finished
            return true
        case .answering:
            self.closeWhenDone = true
            return false
        case .finished:
            return false
        }
    }

    /// A response without keep-alive was written: requests behind it are not answered.
    mutating func responseClosesConnection() { self.finish() }

    mutating func channelClosed() { self.finish() }

    private mutating func finish() {
        self.state = .finished
        self.waiting = []
        self.partial = nil
        self.readHeld = false
    }
}
