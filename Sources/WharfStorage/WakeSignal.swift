import Synchronization

/// A one-waiter wake-up call: ``fire()`` resumes the task suspended in ``wait(timeout:)``, or, if
/// none is waiting, makes the next wait return at once. Wake-ups do not queue up: many fires
/// before a wait count as one. Used by ``CacheBudget`` (the evictor waits for pressure) and the
/// fills' drain at shutdown.
///
/// Not an `AsyncStream<Void>`: a task cancelled while awaiting a stream's `next()` terminates the
/// stream for good, so the first timed-out or cancelled wait would leave every later wait returning
/// at once. One continuation behind a lock has no such state to lose.
package final class WakeSignal: Sendable {
    private struct State {
        var fired = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    package init() {}

    package func fire() {
        let waiter = self.state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard let w = s.waiter else {
                s.fired = true
                return nil
            }
            s.waiter = nil
            return w
        }
        waiter?.resume()
    }

    /// Suspends until fired, `timeout` passes, or the task is cancelled. Only one task may wait at a time.
    package func wait(timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: timeout) }
            group.addTask { await self.waitForFire() }
            await group.next()
            group.cancelAll()  // the other child returns at once (the waiter's cancel handler fires it)
        }
    }

    private func waitForFire() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = self.state.withLock { s -> Bool in
                    if s.fired || Task.isCancelled {
                        s.fired = false
                        return true
                    }
                    s.waiter = c
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            self.fire()
        }
    }
}
