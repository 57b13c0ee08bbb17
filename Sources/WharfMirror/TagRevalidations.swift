import Synchronization

/// Background revalidations of expired tags answered stale within their stale-while-revalidate
/// window: at most one per key (upstream, repository, tag, accept class) at a time, run as child
/// tasks of ``run()`` (part of the mirror's maintenance) and cancelled with it at shutdown.
package final class TagRevalidations: Sendable {
    struct Job: Sendable {
        let key: String
        let body: @Sendable () async -> Void
    }

    private struct State {
        var jobs: AsyncStream<Job>.Continuation?
        var inFlight: Set<String> = []
    }

    private let state = Mutex(State())

    /// Queues `body` under `key` unless a revalidation for `key` is already queued or running.
    /// False when the run loop is not running (the caller then revalidates on its own).
    func start(_ key: String, _ body: @escaping @Sendable () async -> Void) -> Bool {
        self.state.withLock { s in
            guard let jobs = s.jobs else { return false }
            if s.inFlight.insert(key).inserted { jobs.yield(Job(key: key, body: body)) }
            return true
        }
    }

    /// Revalidations queued or running now.
    package var inFlight: Int { self.state.withLock { $0.inFlight.count } }

    /// Runs queued revalidations until cancelled; then cancels those still running and returns once they ended.
    func run() async {
        let (jobs, continuation) = AsyncStream.makeStream(of: Job.self)
        self.state.withLock { $0.jobs = continuation }
        await withDiscardingTaskGroup { group in
            for await job in jobs {  // ends when this task is cancelled
                group.addTask {
                    await job.body()
                    self.state.withLock { _ = $0.inFlight.remove(job.key) }
                }
            }
            self.state.withLock { $0.jobs = nil }
        }
        self.state.withLock { $0.inFlight = [] }
    }
}
