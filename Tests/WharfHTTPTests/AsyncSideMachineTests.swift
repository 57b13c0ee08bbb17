import NIOHTTP1
import Testing
@testable import WharfHTTP

/// Every event in every state of ``AsyncSideMachine``, without sockets.
@Suite(.tags(.unit)) struct AsyncSideMachineTests {
    typealias Machine = AsyncSideMachine

    static func head(_ uri: String) -> HTTPRequestHead { HTTPRequestHead(version: .http1_1, method: .GET, uri: uri) }
    static func request(_ uri: String, body: Int = 0) -> Machine.Request { Machine.Request(head: Self.head(uri), bodyBytes: body) }

    /// Feeds one whole request (head, optional body, end).
    static func receive(_ m: inout Machine, _ uri: String, body: Int = 0) -> Machine.EndAction {
        m.head(Self.head(uri))
        if body > 0 { m.body(body) }
        return m.end()
    }

    @Test("a whole request starts a task; requests behind it wait, in order; the task ends when none is left")
    func startsAndDrains() {
        var m = Machine()
        #expect(m.state == .idle)
        #expect(Self.receive(&m, "/a") == .start(Self.request("/a")))
        #expect(m.state == .answering)
        #expect(Self.receive(&m, "/b") == .none)
        #expect(Self.receive(&m, "/c", body: 5) == .none)
        #expect(m.waiting == [Self.request("/b"), Self.request("/c", body: 5)])
        #expect(m.answered() == .start(Self.request("/b"), resumeReading: false))
        #expect(m.answered() == .start(Self.request("/c", body: 5), resumeReading: false))
        #expect(m.answered() == .stop(closeWhenFlushed: false))
        #expect(m.state == .idle && m.waiting.isEmpty)
        // The next request starts a new task.
        #expect(Self.receive(&m, "/d") == .start(Self.request("/d")))
    }

    @Test("a head alone starts nothing: the request is whole only at its end")
    func headAlone() {
        var m = Machine()
        m.head(Self.head("/a"))
        m.body(10)
        #expect(m.state == .idle)
        #expect(m.end() == .start(Self.request("/a", body: 10)))
        #expect(m.end() == .none, "an end without a head starts nothing")
    }

    @Test("a body over 1 MiB marks its request: the task closes the connection when its turn comes")
    func bodyTooLarge() {
        var m = Machine()
        m.head(Self.head("/a"))
        m.body(Machine.maxBodyBytes)
        m.body(1)
        guard case .start(let request) = m.end() else { Issue.record("no task started"); return }
        #expect(request.bodyTooLarge && !Self.request("/b", body: Machine.maxBodyBytes).bodyTooLarge)
    }

    @Test("the socket is not read while the queue is full, and is read again once it has drained to the low mark")
    func readBackpressure() {
        var m = Machine()
        _ = Self.receive(&m, "/first")
        for i in 0..<Machine.highWatermark - 1 { _ = Self.receive(&m, "/\(i)") }
        var mayRead = m.mayRead()
        #expect(mayRead)
        _ = Self.receive(&m, "/last")
        #expect(m.waiting.count == Machine.highWatermark)
        mayRead = m.mayRead()
        #expect(!mayRead && m.readHeld)
        var resumed: [Int] = []
        for _ in 0..<Machine.highWatermark {
            guard case .start(_, let resume) = m.answered() else { Issue.record("stopped early"); return }
            if resume { resumed.append(m.waiting.count) }
        }
        #expect(resumed == [Machine.lowWatermark], "one resume, at the low mark")
        mayRead = m.mayRead()
        #expect(mayRead && !m.readHeld)
    }

    @Test("the client closing its side: an idle connection closes once flushed; a busy one after its last answer")
    func inputClosed() {
        var idle = Machine()
        let first = idle.inputClosed(), second = idle.inputClosed()
        #expect(first && idle.state == .finished)
        #expect(!second, "once")
        #expect(Self.receive(&idle, "/late") == .none, "nothing is answered after")

        var busy = Machine()
        _ = Self.receive(&busy, "/a")
        _ = Self.receive(&busy, "/b")
        busy.head(Self.head("/cut"))  // never whole: dropped
        let closeNow = busy.inputClosed()
        #expect(!closeNow)
        #expect(busy.answered() == .start(Self.request("/b"), resumeReading: false), "what was whole is still answered")
        #expect(busy.answered() == .stop(closeWhenFlushed: true))
        #expect(busy.state == .finished)
    }

    @Test("a response that closes the connection drops the requests behind it; so does the connection closing")
    func finishing() {
        for closing in [true, false] {
            var m = Machine()
            _ = Self.receive(&m, "/a")
            _ = Self.receive(&m, "/b")
            if closing { m.responseClosesConnection() } else { m.channelClosed() }
            #expect(m.state == .finished && m.waiting.isEmpty)
            #expect(m.answered() == .stop(closeWhenFlushed: false))
            #expect(Self.receive(&m, "/c") == .none)
            let closeNow = m.inputClosed()
            #expect(!closeNow)
        }
    }
}
