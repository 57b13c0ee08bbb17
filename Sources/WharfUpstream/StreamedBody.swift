import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import Synchronization

/// A blob body from the upstream, read with async-http-client's event-loop delegate instead of its
/// async body sequence: the connection keeps reading while the reader is behind by less than
/// ``StreamedBodyState/highWatermark``, and the reader takes every part waiting at once.
///
/// ``execute(_:on:headDeadline:highWatermark:)`` returns once the response head arrived (by
/// `headDeadline`, else the request fails with `deadlineExceeded`, as the async API's timeout does),
/// with the body as an ordinary `HTTPClientResponse.Body`. A reader that stops early, drops the
/// body or is cancelled cancels the request, which closes its connection.
final class StreamedBody: Sendable {
    private struct Locked {
        var machine: StreamedBodyState
        var reader: CheckedContinuation<[ByteBuffer], any Error>?
        var producer: EventLoopPromise<Void>?
        /// Set once the request is sent; the reader exists only after that.
        var task: HTTPClient.Task<Void>?
    }
    private let locked: Mutex<Locked>

    private init(highWatermark: Int, pace: BodyPace?) {
        self.locked = Mutex(Locked(machine: StreamedBodyState(highWatermark: highWatermark, pace: pace)))
    }

    /// Sends `request` and waits for the response head. The body then fails with
    /// ``UpstreamBodyTooSlow`` if it arrives slower than `pace`.
    static func execute(
        _ request: HTTPClient.Request, on client: HTTPClient, headDeadline: NIODeadline, pace: BodyPace? = nil, highWatermark: Int = 1 << 20
    ) async throws -> HTTPClientResponse {
        let body = StreamedBody(highWatermark: highWatermark, pace: pace)
        let delegate = Delegate(body: body)
        // The delegate prefers a connection on this loop (no hop per part) but takes any: requiring
        // the loop would let async-http-client open connections past the pool's bound.
        let loop = client.eventLoopGroup.next()
        let task = client.execute(request: request, delegate: delegate, eventLoop: .delegate(on: loop), deadline: nil)
        body.locked.withLock { $0.task = task }
        let head: HTTPResponseHead = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                delegate.start(head: continuation)
                // The head's bound; past it the request fails like the async API's timeout.
                let timer = loop.scheduleTask(deadline: headDeadline) { task.fail(reason: HTTPClientError.deadlineExceeded) }
                delegate.onHead { timer.cancel() }
            }
        } onCancel: {
            task.cancel()
        }
        return HTTPClientResponse(status: head.status, headers: head.headers, body: .stream(Parts(reader: Reader(body))))
    }

    // MARK: Producer side (the delegate, on the connection's event loop)

    fileprivate func received(_ part: ByteBuffer, task: HTTPClient.Task<Void>) -> EventLoopFuture<Void> {
        let loop = task.eventLoop
        let (action, reader, promise) = self.locked.withLock { l -> (StreamedBodyState.PartAction, CheckedContinuation<[ByteBuffer], any Error>?, EventLoopPromise<Void>?) in
            let action = l.machine.receivedPart(part)
            switch action {
            case .resumeReader:
                defer { l.reader = nil }
                return (action, l.reader, nil)
            case .pause:
                let promise = loop.makePromise(of: Void.self)
                l.producer = promise
                return (action, nil, promise)
            case .proceed, .cancelRequest, .failRequest:
                return (action, nil, nil)
            }
        }
        switch action {
        case .proceed:
            return loop.makeSucceededVoidFuture()
        case .failRequest(let error):
            task.fail(reason: error)  // the reader gets `error` through didReceiveError
            return loop.makeSucceededVoidFuture()
        case .resumeReader(let parts):
            reader?.resume(returning: parts)
            return loop.makeSucceededVoidFuture()
        case .pause:
            return promise!.futureResult
        case .cancelRequest:
            task.cancel()
            return loop.makeSucceededVoidFuture()
        }
    }

    fileprivate func ended(_ error: (any Error)?) {
        let (action, reader) = self.locked.withLock { l in
            let action = error.map { l.machine.failed($0) } ?? l.machine.finished()
            defer { l.reader = nil }
            return (action, l.reader)
        }
        switch action {
        case .none: break
        case .resumeReader(let parts): reader?.resume(returning: parts)
        case .failReader(let error): reader?.resume(throwing: error)
        }
    }

    // MARK: Reader side

    /// The next parts; empty at the end.
    fileprivate func next() async throws -> [ByteBuffer] {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[ByteBuffer], any Error>) in
                let (action, producer) = self.locked.withLock { l in
                    let action = l.machine.read()
                    if case .wait = action { l.reader = continuation }
                    guard case .takeAndResumeProducer = action else { return (action, nil as EventLoopPromise<Void>?) }
                    defer { l.producer = nil }
                    return (action, l.producer)
                }
                switch action {
                case .take(let parts): continuation.resume(returning: parts)
                case .takeAndResumeProducer(let parts):
                    producer?.succeed()
                    continuation.resume(returning: parts)
                case .wait: break
                case .end: continuation.resume(returning: [])
                case .fail(let error): continuation.resume(throwing: error)
                }
            }
        } onCancel: {
            self.abandon()
        }
    }

    /// The reader is gone: cancel the request unless it ended.
    fileprivate func abandon() {
        let (action, producer, reader, task) = self.locked.withLock { l in
            let action = l.machine.abandoned()
            defer { l.producer = nil; l.reader = nil }
            return (action, l.producer, l.reader, l.task)
        }
        guard case .cancelRequest(let resumeProducer, let failReader) = action else { return }
        task?.cancel()
        if resumeProducer { producer?.succeed() }
        if failReader { reader?.resume(throwing: CancellationError()) }
    }

    /// Cancels the request when the body is dropped before its end (deinit of the last reference).
    fileprivate final class Reader: Sendable {
        let body: StreamedBody
        init(_ body: StreamedBody) { self.body = body }
        deinit { self.body.abandon() }
    }

    /// The body as an async sequence of parts, batches taken from the delegate one at a time.
    fileprivate struct Parts: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        let reader: Reader

        func makeAsyncIterator() -> Iterator { Iterator(reader: self.reader) }

        struct Iterator: AsyncIteratorProtocol {
            let reader: Reader
            var batch: [ByteBuffer] = []
            var index = 0
            var ended = false

            mutating func next() async throws -> ByteBuffer? {
                if self.index == self.batch.count {
                    guard !self.ended else { return nil }
                    self.batch = try await self.reader.body.next()
                    self.index = 0
                    if self.batch.isEmpty {
                        self.ended = true
                        return nil
                    }
                }
                defer { self.index += 1 }
                return self.batch[self.index]
            }
        }
    }

    /// async-http-client's delegate: hands the head to the caller and every part to the body.
    private final class Delegate: HTTPClientResponseDelegate, Sendable {
        typealias Response = Void
        private struct Waiting {
            var head: CheckedContinuation<HTTPResponseHead, any Error>?
            var headArrived: (@Sendable () -> Void)?
            var early: Result<HTTPResponseHead, any Error>?
        }
        private let waiting = Mutex(Waiting())
        let body: StreamedBody

        init(body: StreamedBody) { self.body = body }

        func start(head: CheckedContinuation<HTTPResponseHead, any Error>) {
            let early = self.waiting.withLock { w in
                if w.early == nil { w.head = head }
                return w.early
            }
            if let early { head.resume(with: early) }
        }

        func onHead(_ action: @escaping @Sendable () -> Void) {
            let arrived = self.waiting.withLock { w in
                if w.early == nil { w.headArrived = action }
                return w.early != nil
            }
            if arrived { action() }
        }

        private func resolveHead(_ result: Result<HTTPResponseHead, any Error>) {
            let (continuation, arrived) = self.waiting.withLock { w in
                guard w.early == nil else { return (nil as CheckedContinuation<HTTPResponseHead, any Error>?, nil as (@Sendable () -> Void)?) }
                w.early = result
                defer { w.head = nil; w.headArrived = nil }
                return (w.head, w.headArrived)
            }
            arrived?()
            continuation?.resume(with: result)
        }

        func didReceiveHead(task: HTTPClient.Task<Void>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
            self.resolveHead(.success(head))
            return task.eventLoop.makeSucceededVoidFuture()
        }

        func didReceiveBodyPart(task: HTTPClient.Task<Void>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
            self.body.received(buffer, task: task)
        }

        func didReceiveError(task: HTTPClient.Task<Void>, _ error: any Error) {
            self.resolveHead(.failure(error))
            self.body.ended(error)
        }

        func didFinishRequest(task: HTTPClient.Task<Void>) throws {
            self.body.ended(nil)
        }
    }
}
