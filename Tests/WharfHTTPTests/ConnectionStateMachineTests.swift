import Testing
@testable import WharfHTTP

/// Every event in every state of ``ConnectionStateMachine``, without sockets.
@Suite(.tags(.unit)) struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine

    @Test("the event loop answers only while nothing is in flight, so responses stay in request order")
    func answersInOrder() {
        var m = Machine()
        #expect(m.mayAnswerOnLoop && m.state == .idle)
        m.requestForwarded()
        #expect(!m.mayAnswerOnLoop && m.state == .busy(asyncRequests: 1, hitSends: 0))
        m.requestForwarded()
        #expect(m.asyncResponseEnded() == .none && !m.mayAnswerOnLoop)
        #expect(m.asyncResponseEnded() == .none && m.mayAnswerOnLoop && m.state == .idle)
    }

    @Test("a hit's sendfile in flight does not stop the next hit, and ends back in idle")
    func hitSends() {
        var m = Machine()
        m.hitSendStarted()
        #expect(m.state == .busy(asyncRequests: 0, hitSends: 1) && !m.mayAnswerOnLoop)
        m.hitSendStarted()
        #expect(m.hitSendFinished() == .none && m.state == .busy(asyncRequests: 0, hitSends: 1))
        #expect(m.hitSendFinished() == .none && m.state == .idle)
    }

    @Test("quiescing an idle connection closes it once its queued bytes are out")
    func quiesceIdle() {
        var m = Machine()
        #expect(m.quiesce() == .closeWhenFlushed)
        #expect(m.state == .closed && m.isEnding && !m.mayAnswerOnLoop)
        #expect(m.quiesce() == .none, "a second quiesce does nothing")
    }

    @Test("quiescing waits for every async response and every hit sendfile, in any order, then closes once")
    func quiesceBusy() {
        for order in [[0, 1, 1], [1, 0, 1], [1, 1, 0]] {  // 0: async response ends, 1: hit send ends
            var m = Machine()
            m.requestForwarded()
            m.hitSendStarted()
            m.hitSendStarted()
            #expect(m.quiesce() == .none)
            #expect(m.state == .quiescing(asyncRequests: 1, hitSends: 2) && !m.mayAnswerOnLoop && m.isEnding)
            var actions: [Machine.Action] = []
            for event in order { actions.append(event == 0 ? m.asyncResponseEnded() : m.hitSendFinished()) }
            #expect(actions == [.none, .none, .closeWhenFlushed], "\(order)")
            #expect(m.state == .closed)
        }
    }

    @Test("a request that reaches the async side while quiescing is waited for too")
    func requestWhileQuiescing() {
        var m = Machine()
        m.hitSendStarted()
        _ = m.quiesce()
        m.requestForwarded()
        #expect(m.hitSendFinished() == .none)
        #expect(m.asyncResponseEnded() == .closeWhenFlushed)
    }

    @Test("a response without keep-alive ends the connection: nothing more is answered or counted")
    func closing() {
        var m = Machine()
        m.hitSendStarted()
        m.responseWithoutKeepAlive()
        #expect(m.state == .closing && m.isEnding && !m.mayAnswerOnLoop)
        m.requestForwarded()
        #expect(m.hitSendFinished() == .none && m.asyncResponseEnded() == .none && m.quiesce() == .none)
        #expect(m.state == .closing)
    }

    @Test("a closed connection stays closed whatever comes late")
    func closedIsFinal() {
        var m = Machine()
        m.requestForwarded()
        m.channelClosed()
        m.requestForwarded()
        m.hitSendStarted()
        m.responseWithoutKeepAlive()
        #expect(m.asyncResponseEnded() == .none && m.hitSendFinished() == .none && m.quiesce() == .none)
        #expect(m.state == .closed && m.isEnding)
    }

    @Test("unbalanced ends (a late completion) never go below zero")
    func unbalanced() {
        var m = Machine()
        #expect(m.asyncResponseEnded() == .none && m.hitSendFinished() == .none && m.state == .idle)
        m.requestForwarded()
        m.hitSendStarted()
        _ = m.asyncResponseEnded()
        _ = m.asyncResponseEnded()
        #expect(m.state == .busy(asyncRequests: 0, hitSends: 1))
        #expect(m.quiesce() == .none)
        #expect(m.hitSendFinished() == .closeWhenFlushed)
    }
}
