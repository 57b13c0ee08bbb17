import Testing
import WharfAuth

/// ``VerificationQueue`` as a value: workers, two lanes, caps.
@Suite(.tags(.unit)) struct VerificationQueueTests {
    typealias Queue = VerificationQueue<Int>

    @Test("free workers run at once; then attempts wait up to each lane's cap and the rest are rejected")
    func capsPerLane() {
        var q = Queue(limits: .init(workers: 2, maxFreshWaiting: 2, maxSuspectWaiting: 1))
        #expect(q.submit(1, lane: .suspect) == .run)
        #expect(q.submit(2, lane: .suspect) == .run)
        #expect(q.submit(3, lane: .suspect) == .wait)
        #expect(q.submit(4, lane: .suspect) == .reject, "the suspect lane holds one")
        #expect(q.submit(5, lane: .fresh) == .wait, "a full suspect lane does not block fresh attempts")
        #expect(q.submit(6, lane: .fresh) == .wait)
        #expect(q.submit(7, lane: .fresh) == .reject)
        #expect(q.running == 2 && q.waiting == (fresh: 2, suspect: 1))
    }

    @Test("a finished check hands its worker to the fresh lane first, in arrival order, then to the suspect lane")
    func freshFirst() {
        var q = Queue(limits: .init(workers: 1, maxFreshWaiting: 10, maxSuspectWaiting: 10))
        #expect(q.submit(0, lane: .suspect) == .run)
        for i in 1...3 { #expect(q.submit(i, lane: .suspect) == .wait) }
        #expect(q.submit(10, lane: .fresh) == .wait)
        #expect(q.submit(11, lane: .fresh) == .wait)
        var order: [Int] = []
        while let next = q.finished() { order.append(next) }
        #expect(order == [10, 11, 1, 2, 3])
        #expect(q.running == 0, "the last finish frees the worker")
        #expect(q.submit(20, lane: .suspect) == .run)
    }

    @Test("a flood of 400 suspect attempts on one worker: 1 runs, 4 wait, 395 are rejected at once; a fresh one is next")
    func flood() {
        var q = Queue(limits: .init(workers: 1, maxFreshWaiting: 16, maxSuspectWaiting: 4))
        var outcomes: [Queue.Admission: Int] = [:]
        for i in 0..<400 { outcomes[q.submit(i, lane: .suspect), default: 0] += 1 }
        #expect(outcomes == [.run: 1, .wait: 4, .reject: 395])
        #expect(q.submit(1000, lane: .fresh) == .wait)
        #expect(q.finished() == 1000)
    }
}
