import NIOCore
import NIOPosix
import Synchronization

/// Runs password-hash checks on NIO's blocking thread pool, never on the event loops or the task
/// pool, admitted by a ``VerificationQueue``: at most `workers` at once (half the pool by default,
/// so file opens keep the rest), the few that wait served fresh lane first, and the others refused.
public final class BcryptWorkers: Sendable {
    public typealias Queue = VerificationQueue<CheckedContinuation<Bool, Never>>

    private let queue: Mutex<Queue>

    public init(limits: Queue.Limits = BcryptWorkers.defaultLimits) {
        self.queue = Mutex(Queue(limits: limits))
    }

    /// Half the cores (at least one) check at once; 16 per worker may wait in the fresh lane, 4 in the suspect one.
    public static var defaultLimits: Queue.Limits {
        let workers = max(1, System.coreCount / 2)
        return Queue.Limits(workers: workers, maxFreshWaiting: 16 * workers, maxSuspectWaiting: 4 * workers)
    }

    /// Checks running and waiting now.
    public var load: (running: Int, fresh: Int, suspect: Int) {
        self.queue.withLock { q in (q.running, q.waiting.fresh, q.waiting.suspect) }
    }

    /// Runs `check` when a worker is free; nil (and nothing run) when `lane` is full.
    public func run(lane: Queue.Lane, _ check: @escaping @Sendable () -> Bool) async -> Bool? {
        let admitted = await withCheckedContinuation { (turn: CheckedContinuation<Bool, Never>) in
            switch self.queue.withLock({ $0.submit(turn, lane: lane) }) {
            case .run: turn.resume(returning: true)
            case .wait: break
            case .reject: turn.resume(returning: false)
            }
        }
        guard admitted else { return nil }
        let result = (try? await NIOThreadPool.singleton.runIfActive(check)) ?? false
        self.queue.withLock { $0.finished() }?.resume(returning: true)
        return result
    }
}
