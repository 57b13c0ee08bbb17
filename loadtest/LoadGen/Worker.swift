import Histogram
import NIOCore
import Synchronization

extension Histogram<UInt64> {
    /// Latencies in microseconds, 1 µs to 1 h, two significant digits.
    static func latency() -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .two)
    }
}

/// Per-event-loop statistics shared by the workers of that loop (confined to it).
final class LoopStats: @unchecked Sendable {
    /// Whole-response latency, microseconds.
    var latency = Histogram<UInt64>.latency()
    /// Time to the response head, microseconds.
    var firstByte = Histogram<UInt64>.latency()
    var completed = 0
    var errors = 0
    var statusErrors = 0
    var connectionErrors = 0
    var connects = 0
    /// Body bytes received, including those of responses cut off at the deadline.
    var bytes = 0
    /// Body bytes of completed responses.
    var completedBytes = 0
    /// Responses by status code (index = code, 0..<600).
    var statusCounts = [Int](repeating: 0, count: 600)
    var firstErrorMessage: String?

    func noteError(_ message: String) {
        errors += 1
        if firstErrorMessage == nil { firstErrorMessage = message }
    }
}

/// State shared by every worker of one run.
final class RunShared: Sendable {
    let target: Target
    let paths: [String]
    let sequential: Bool
    let expectStatus: Set<UInt>
    /// Stop issuing requests at this uptime (nanoseconds); `UInt64.max` when request-bounded.
    let deadline: UInt64
    /// Total requests to issue; `Int.max` when time-bounded.
    let requestBudget: Int
    let issued = Atomic<Int>(0)
    /// Per-worker interval between request starts in nanoseconds (fixed-rate mode), or 0.
    let intervalNanos: UInt64
    let requests: [ByteBuffer]

    init(target: Target, paths: [String], sequential: Bool, expectStatus: Set<UInt>, deadline: UInt64, requestBudget: Int, intervalNanos: UInt64) {
        self.target = target
        self.paths = paths
        self.sequential = sequential
        self.expectStatus = expectStatus
        self.deadline = deadline
        self.requestBudget = requestBudget
        self.intervalNanos = intervalNanos
        self.requests = paths.map { target.request(path: $0) }
    }

    /// Claims the next request: its path index, or nil when the budget is spent.
    func claim(random: inout SplitMix) -> Int? {
        let n = issued.add(1, ordering: .relaxed).oldValue
        if n >= requestBudget { return nil }
        if sequential || paths.count == 1 { return n % paths.count }
        return Int(random.next() % UInt64(paths.count))
    }
}

struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z &>> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z &>> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z &>> 31)
    }
}

/// One closed-loop client: one keep-alive connection, one request at a time. Confined to its loop.
final class Worker: ResponseDelegate, @unchecked Sendable {
    let loop: any EventLoop
    let shared: RunShared
    let stats: LoopStats
    let done: EventLoopPromise<Void>
    private var channel: (any Channel)?
    private var handler: ResponseHandler?
    private var random: SplitMix
    private var start: UInt64 = 0
    private var intended: UInt64 = 0
    private var nextSlot: UInt64 = 0
    private var status: UInt = 0
    private var bodyBytes = 0
    private var keepAlive = true
    private var finished = false
    private var consecutiveConnectFailures = 0

    init(loop: any EventLoop, shared: RunShared, stats: LoopStats, seed: UInt64, firstSlot: UInt64) {
        self.loop = loop
        self.shared = shared
        self.stats = stats
        self.done = loop.makePromise()
        self.random = SplitMix(state: seed)
        self.nextSlot = firstSlot
    }

    func begin() {
        loop.execute { self.connect() }
        if shared.deadline != UInt64.max {
            let wait = Int64(shared.deadline) - Int64(nowNanos())
            loop.scheduleTask(in: .nanoseconds(max(0, wait))) { self.finish(cutOff: true) }
        }
    }

    private func connect() {
        guard !finished else { return }
        let handler = ResponseHandler()
        handler.delegate = self
        self.handler = handler
        stats.connects += 1
        shared.target.connect(on: loop, handler: handler).whenComplete { result in
            switch result {
            case .success(let channel):
                guard !self.finished else {
                    channel.close(promise: nil)
                    return
                }
                self.channel = channel
                self.consecutiveConnectFailures = 0
                self.sendNext()
            case .failure(let error):
                self.stats.connectionErrors += 1
                self.stats.noteError("connect: \(error)")
                self.consecutiveConnectFailures += 1
                if self.consecutiveConnectFailures > 50 {
                    self.finish(cutOff: false)
                } else {
                    self.loop.scheduleTask(in: .milliseconds(20)) { self.connect() }
                }
            }
        }
    }

    private func sendNext() {
        guard !finished, let channel else { return }
        let now = nowNanos()
        if now >= shared.deadline {
            finish(cutOff: false)
            return
        }
        if shared.intervalNanos > 0 && now < nextSlot {
            // Fixed rate: wait for this worker's next slot.
            loop.scheduleTask(deadline: NIODeadline.uptimeNanoseconds(nextSlot)) { self.sendNext() }
            return
        }
        guard let index = shared.claim(random: &random) else {
            finish(cutOff: false)
            return
        }
        start = nowNanos()
        if shared.intervalNanos > 0 {
            // Latency counts from the intended start (corrects coordinated omission).
            intended = min(nextSlot, start)
            nextSlot += shared.intervalNanos
        } else {
            intended = start
        }
        status = 0
        bodyBytes = 0
        keepAlive = true
        handler?.inFlight = true
        channel.writeAndFlush(shared.requests[index], promise: nil)
    }

    func responseHead(status: UInt, keepAlive: Bool) {
        self.status = status
        self.keepAlive = keepAlive
        stats.firstByte.record((nowNanos() - intended) / 1000)
    }

    func responseBody(_ buffer: ByteBuffer) {
        bodyBytes += buffer.readableBytes
        stats.bytes += buffer.readableBytes
    }

    func responseEnd() {
        let end = nowNanos()
        stats.latency.record((end - intended) / 1000)
        stats.completed += 1
        stats.completedBytes += bodyBytes
        stats.statusCounts[Int(min(status, 599))] += 1
        if !shared.expectStatus.contains(status) {
            stats.statusErrors += 1
            stats.noteError("status \(status)")
        }
        if keepAlive {
            sendNext()
        } else {
            let old = channel
            channel = nil
            handler?.delegate = nil
            old?.close(promise: nil)
            connect()
        }
    }

    func connectionClosed(midResponse: Bool, error: (any Error)?) {
        guard !finished else { return }
        channel = nil
        if midResponse {
            stats.connectionErrors += 1
            stats.noteError("connection closed mid-response\(error.map { ": \($0)" } ?? "")")
        }
        connect()
    }

    /// Stops this worker; with `cutOff`, a response in flight is abandoned (its bytes already counted).
    func finish(cutOff: Bool) {
        guard !finished else { return }
        finished = true
        handler?.delegate = nil
        channel?.close(promise: nil)
        channel = nil
        done.succeed(())
    }
}
