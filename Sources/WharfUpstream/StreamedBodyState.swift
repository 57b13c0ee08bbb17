import NIOCore

/// The state of one upstream body streamed from async-http-client's event-loop delegate to one
/// async reader, as a value: events in, actions out, no locks or I/O (``StreamedBody`` carries out
/// the actions under its lock).
///
/// The producer (the delegate, on the connection's event loop) keeps reading while fewer than
/// ``highWatermark`` bytes wait; past that it is paused until the reader takes them. The reader
/// takes everything waiting at once, so a fill wakes once per batch, not once per 64 KiB read as
/// with async-http-client's own body sequence (whose buffer holds one part: every part is a
/// round trip between the event loop and the reader's task).
struct StreamedBodyState {
    /// Bytes waiting for the reader before the producer is paused. At most this plus one part is
    /// held here, and the reader holds at most one batch of this size.
    let highWatermark: Int

    enum State {
        /// Parts arrived and not yet taken; `paused`: the producer waits for the reader.
        case streaming(parts: [ByteBuffer], bytes: Int, paused: Bool, readerWaiting: Bool)
        /// The producer finished (the whole body arrived); `parts` are the last ones not yet taken.
        case finished(parts: [ByteBuffer])
        case failed(any Error)
        /// The reader stopped reading (dropped the body or its task was cancelled).
        case abandoned
    }

    private(set) var state: State = .streaming(parts: [], bytes: 0, paused: false, readerWaiting: false)
    /// How fast the body arrives, against the slowest allowed (nil: not bound).
    private var pace: BodyPace.Meter?

    init(highWatermark: Int, pace: BodyPace? = nil, now: NIODeadline = .now()) {
        self.highWatermark = highWatermark
        self.pace = pace.map { BodyPace.Meter($0, now: now) }
    }

    enum PartAction {
        /// Keep reading.
        case proceed
        /// Keep reading, and give the waiting reader these parts.
        case resumeReader([ByteBuffer])
        /// Stop reading until ``ReadAction/takeAndResumeProducer(_:)`` or the end.
        case pause
        /// The reader is gone: stop the request.
        case cancelRequest
        /// The body is slower than its ``BodyPace``: fail the request with this error.
        case failRequest(UpstreamBodyTooSlow)
    }

    mutating func receivedPart(_ part: ByteBuffer, now: NIODeadline = .now()) -> PartAction {
        switch self.state {
        case .streaming(var parts, var bytes, let paused, let readerWaiting):
            precondition(!paused, "a part arrived while the producer was paused")
            if var meter = self.pace {
                guard meter.received(part.readableBytes, now: now) else { return .failRequest(UpstreamBodyTooSlow(pace: meter.pace)) }
                self.pace = meter
            }
            if readerWaiting {
                self.state = .streaming(parts: [], bytes: 0, paused: false, readerWaiting: false)
                return .resumeReader(parts + [part])
            }
            parts.append(part)
            bytes += part.readableBytes
            let pause = bytes >= self.highWatermark
            self.state = .streaming(parts: parts, bytes: bytes, paused: pause, readerWaiting: false)
            return pause ? .pause : .proceed
        case .abandoned:
            return .cancelRequest
        case .finished, .failed:
            return .proceed  // async-http-client sends nothing after the end or an error
        }
    }

    enum EndAction {
        case none
        /// Give the waiting reader these last parts, or the end (empty).
        case resumeReader([ByteBuffer])
        case failReader(any Error)
    }

    mutating func finished() -> EndAction {
        switch self.state {
        case .streaming(let parts, _, _, let readerWaiting):
            if readerWaiting {
                self.state = .finished(parts: [])
                return .resumeReader(parts)
            }
            self.state = .finished(parts: parts)
            return .none
        case .finished, .failed, .abandoned:
            return .none
        }
    }

    mutating func failed(_ error: any Error) -> EndAction {
        switch self.state {
        case .streaming(_, _, _, let readerWaiting):
            self.state = .failed(error)
            return readerWaiting ? .failReader(error) : .none
        case .finished, .failed, .abandoned:
            return .none
        }
    }

    enum ReadAction {
        /// These parts, and the producer keeps going.
        case take([ByteBuffer])
        /// These parts; the producer was paused and may read again.
        case takeAndResumeProducer([ByteBuffer])
        /// Nothing yet: suspend until the producer resumes the reader.
        case wait
        /// The body is complete.
        case end
        case fail(any Error)
    }

    /// The reader asks for more.
    mutating func read(now: NIODeadline = .now()) -> ReadAction {
        switch self.state {
        case .streaming(let parts, _, let paused, let readerWaiting):
            precondition(!readerWaiting, "one reader at a time")
            if parts.isEmpty {
                self.state = .streaming(parts: [], bytes: 0, paused: false, readerWaiting: true)
                return .wait
            }
            self.state = .streaming(parts: [], bytes: 0, paused: false, readerWaiting: false)
            if paused { self.pace?.restart(now: now) }  // the time Wharf did not read is not the upstream's
            return paused ? .takeAndResumeProducer(parts) : .take(parts)
        case .finished(let parts):
            if parts.isEmpty { return .end }
            self.state = .finished(parts: [])
            return .take(parts)
        case .failed(let error):
            return .fail(error)
        case .abandoned:
            return .fail(CancellationError())
        }
    }

    enum AbandonAction {
        case none
        /// Stop the request; `resumeProducer`: it was paused (a paused producer must be let go).
        case cancelRequest(resumeProducer: Bool, failReader: Bool)
    }

    /// The reader will not read any more: the request is cancelled unless it already ended.
    mutating func abandoned() -> AbandonAction {
        switch self.state {
        case .streaming(_, _, let paused, let readerWaiting):
            self.state = .abandoned
            return .cancelRequest(resumeProducer: paused, failReader: readerWaiting)
        case .finished, .failed, .abandoned:
            self.state = .abandoned
            return .none
        }
    }
}
