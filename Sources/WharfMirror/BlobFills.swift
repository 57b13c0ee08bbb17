#if canImport(Glibc)
import AsyncHTTPClient
import NIOHTTP1
import Glibc
#endif
import Logging
import NIOCore
import OCIDistribution
import Synchronization
import WharfLogging
import WharfStorage
import WharfUpstream

/// Starts at most one upstream download per digest and lets every other request join it.
///
/// Fills run as child tasks of ``run()``, the fills' run loop (started by ``Mirror/runMaintenance(fillDrain:)``):
/// a client that disconnects does not cancel its fill, and shutdown (``stop(drain:)``) waits for
/// the fills in flight, up to a bound, then cancels the rest (their temp files are removed). The
/// bytes go through a ``BlobIngest``: written to a temp file and hashed as they arrive; only a
/// fill whose size and digest check out is fsynced, renamed into `blobs/` and committed to the index.
///
/// Outside the run loop's life: a fill requested before ``run()`` started (a mirror used without
/// maintenance, or a request in the moment between the listener opening and maintenance
/// starting) runs in a task of its own, still cancelled at the drain bound; one requested after
/// ``stop(drain:)`` is not started and fails like a fill the cache cannot keep (``isCannotKeep(_:)``),
/// so its client is relayed the blob from the upstream, uncached, instead of waiting.
public final class BlobFills: Sendable {
    public enum Source: Sendable {
        case cached(BlobRecord)
        /// The fill, already followed by the caller (attached under the same lock that found or made
        /// it, so a fill is never without a follower while its caller still means to read it).
        /// Release it when done; a `Following` dropped unreleased releases itself.
        case fill(BlobFill.Following)
    }

    /// One fill to run: what ``source(for:upstream:repository:identity:)`` hands the run loop.
    struct Job: Sendable {
        let fill: BlobFill
        let ingest: BlobIngest
        let upstream: UpstreamChain
        let repository: String
        let identity: UpstreamIdentity
    }

    private enum Loop {
        case notStarted
        case running(AsyncStream<Job>.Continuation)
        case stopped
    }

    private struct State {
        /// Every fill from its start until after its index commit or failure.
        var fills: [Digest: BlobFill] = [:]
        /// Jobs handed to the run loop that no child task has taken yet.
        var queued: [Digest: Job] = [:]
        var loop = Loop.notStarted
        /// Tasks of the fills started before the run loop (see the type's notes).
        var early: [Task<Void, Never>] = []
        /// How long ``run()`` waits for fills in flight once stopped.
        var drain: Duration = .zero
    }

    private let store: BlobStore
    private let index: CacheIndex
    private let logger: Logger
    private let state = Mutex(State())
    /// Fired when the last fill in flight ended (the drain waits for it).
    private let idle = WakeSignal()
    private let stats: MirrorStats

    private let notifier: Notifier?
    private let orphans = Mutex(BlobFill.OrphanPolicy())
    /// What all fills together may hold in memory, received and not yet written or hashed.
    let memory = FillMemory()

    /// Replaces when fills nobody follows are stopped (tests shorten it).
    public func setOrphanPolicy(_ policy: BlobFill.OrphanPolicy) { self.orphans.withLock { $0 = policy } }

    public init(store: BlobStore, index: CacheIndex, stats: MirrorStats, notifier: Notifier? = nil, logger: Logger) {
        self.notifier = notifier
        self.store = store
        self.index = index
        self.stats = stats
        self.logger = logger
    }

    /// The cached blob, the fill already running for it, or a new fill from `upstream` (or, when it is
    /// unreachable or refuses, one of its fallbacks: the blob is verified whichever source sends it).
    /// `identity` is whose credentials a new fill uses (the mirror's, or a pass-through client's).
    public func source(
        for digest: Digest, upstream: UpstreamChain, repository: String, identity: UpstreamIdentity = .mirror
    ) throws(RegistryError) -> Source {
        let result: Result<Source, RegistryError> = self.state.withLock { s in
            if let running = s.fills[digest] {
                self.stats.followersJoined.add()
                return .success(.fill(running.attach()))
            }
            if let record = try? self.index.blob(digest), FileSystemCalls.fileSize(self.store.layout.blobPath(digest)) == record.size {
                return .success(.cached(record))
            }
            if case .stopped = s.loop { return .failure(Self.cannotKeep("the cache is shutting down")) }
            let ingest: BlobIngest
            do { ingest = try BlobIngest.begin(digest, store: self.store, index: self.index, hashing: .byCaller) } catch {
                self.logger.error("cannot create temp file", metadata: ["error": "\(error)"])
                return .failure(Self.cannotKeep("\(error)"))
            }
            guard let fill = BlobFill(digest: digest, origin: (upstream.name, repository), ingest: ingest) else {
                ingest.abort()
                return .failure(Self.cannotKeep("no descriptor left"))
            }
            s.fills[digest] = fill
            self.stats.fillsStarted.add()
            let job = Job(fill: fill, ingest: ingest, upstream: upstream, repository: repository, identity: identity)
            switch s.loop {
            case .running(let jobs):
                s.queued[digest] = job
                jobs.yield(job)
            case .notStarted:
                s.early.append(Task { await self.perform(job) })
            case .stopped:
                preconditionFailure("checked above")
            }
            return .success(.fill(fill.attach()))
        }
        return try result.get()
    }

    public var inFlight: Int { self.state.withLock { $0.fills.count } }

    /// The state of every fill running now (for `/stats` and tests).
    public var runningSnapshots: [BlobFill.Snapshot] { self.state.withLock { $0.fills.values.map(\.snapshot) } }

    /// True while a fill for `digest` runs (from its start until after its index commit or failure).
    public func isFilling(_ digest: Digest) -> Bool { self.state.withLock { $0.fills[digest] != nil } }

    // MARK: Run loop

    /// True while ``run()`` takes fills (for tests).
    var isRunning: Bool { self.state.withLock { if case .running = $0.loop { true } else { false } } }
    /// True once ``stop(drain:)`` was called or the run loop ended (for tests).
    var hasStopped: Bool { self.state.withLock { if case .stopped = $0.loop { true } else { false } } }

    /// Runs every fill as a child task until ``stop(drain:)``; then waits for the fills in flight,
    /// cancels those still running after the drain bound, and returns once all have ended. Call it
    /// once, from a task that shutdown does not cancel (cancelling it cancels every fill at once).
    public func run() async {
        let (jobs, continuation) = AsyncStream.makeStream(of: Job.self)
        let started = self.state.withLock { s -> Bool in
            guard case .notStarted = s.loop else { return false }
            s.loop = .running(continuation)
            return true
        }
        guard started else {
            self.logger.error("the fills' run loop was started twice, or after it stopped")
            return
        }
        await withDiscardingTaskGroup { group in
            for await job in jobs {
                group.addTask {
                    guard self.state.withLock({ $0.queued.removeValue(forKey: job.fill.digest) != nil }) else { return }  // failed as leftover
                    await self.perform(job)
                }
            }
            // Stopped (or cancelled): jobs still in the stream's buffer never reach a child task.
            let leftover = self.state.withLock { s in
                defer { s.queued = [:] }
                return Array(s.queued.values)
            }
            for job in leftover { self.fail(job, RegistryError(.unavailable, "the cache is shutting down")) }
            let bound = self.state.withLock { s -> Duration in
                if case .running = s.loop { s.loop = .stopped }  // cancelled without stop(drain:)
                return s.drain
            }
            if await !self.waitUntilIdle(within: bound) {
                let early = self.state.withLock { $0.early }
                self.logger.warning("fills still running at shutdown are cancelled", metadata: ["count": "\(self.inFlight)"])
                group.cancelAll()
                for task in early { task.cancel() }
            }
        }
        for task in self.state.withLock({ $0.early }) { await task.value }
    }

    /// Ends the run loop: no new fill starts (see the type's notes); those in flight get `drain` to
    /// finish before they are cancelled. ``run()`` returns once all have ended.
    public func stop(drain: Duration) {
        let jobs: AsyncStream<Job>.Continuation? = self.state.withLock { s in
            s.drain = drain
            switch s.loop {
            case .running(let jobs):
                s.loop = .stopped
                return jobs
            case .notStarted, .stopped:
                s.loop = .stopped
                return nil
            }
        }
        jobs?.finish()
    }

    /// Waits until no fill is in flight or `bound` has passed; true if none is.
    private func waitUntilIdle(within bound: Duration) async -> Bool {
        let deadline = ContinuousClock.now + bound
        while self.inFlight > 0 {
            let now = ContinuousClock.now
            guard now < deadline else { return false }
            await self.idle.wait(timeout: deadline - now)
        }
        return true
    }

    /// Runs one job: downloads, verifies and commits, then forgets the fill.
    private func perform(_ job: Job) async {
        await self.download(job.fill, ingest: job.ingest, upstream: job.upstream, repository: job.repository, identity: job.identity)
        self.finished(job.fill)
    }

    /// A job that never ran: its followers get `error`, its temp file goes.
    private func fail(_ job: Job, _ error: RegistryError) {
        job.ingest.abort()
        self.stats.fillsFailed.add()
        job.fill.failed(error)
        self.finished(job.fill)
    }

    private func finished(_ fill: BlobFill) {
        let empty = self.state.withLock { s in
            if s.fills[fill.digest] === fill { s.fills[fill.digest] = nil }
            return s.fills.isEmpty
        }
        if empty { self.idle.fire() }
    }

    private func download(_ fill: BlobFill, ingest: BlobIngest, upstream: UpstreamChain, repository: String, identity: UpstreamIdentity) async {
        let digest = fill.digest
        let started = ContinuousClock.now
        // The writer owns the ingest until it hands it back; then `open` says it is not committed yet.
        let writer = FillWriter(ingest: ingest, fill: fill, memory: self.memory)
        var writerOwns = true
        var ingest = ingest
        var open = false
        var source = upstream.name
        var sourceClient = upstream.primary
        do {
            let answer = try await upstream.send(.GET, repository: repository, path: "blobs/\(digest)", as: identity)
            source = answer.source.configuration.name
            sourceClient = answer.source
            let response = answer.response
            guard response.status == 200, let body = response.body else {
                throw UpstreamErrors.fromStatus(response.status, headers: response.headers, kind: .blob)
            }
            let expected = response.contentLength
            if let expected {
                do { try writer.expect(size: expected) } catch {
                    self.logger.warning("no room to cache a blob", metadata: ["digest": "\(digest)", "bytes": "\(expected)", "error": "\(error)"])
                    throw Self.cannotKeep("\(error)")  // before any client got a head: they relay instead
                }
            }
            fill.started(size: expected)
            for try await chunk in body {
                try Task.checkCancellation()  // shutdown's drain bound passed
                // Written and hashed on the writer's queue; followers send each chunk once it is on disk.
                do { try await writer.submit(chunk) } catch { throw Self.writeFailure(error) }
                if fill.isAbandoned(self.orphans.withLock { $0 }) {
                    self.stats.fillsAbandoned.add()
                    throw RegistryError(.blobUnknown, "no client follows this fill and it is below the throughput floor")
                }
            }
            writerOwns = false
            let finished: (ingest: BlobIngest, computedHex: String)
            do { finished = try await writer.finish() } catch { throw Self.writeFailure(error) }
            ingest = finished.ingest
            let computed = finished.computedHex
            open = true
            if let expected, ingest.written != expected {
                throw RegistryError(.blobUnknown, "upstream body ended after \(ingest.written) of \(expected) bytes")
            }
            do { try ingest.verify(computedHex: computed) } catch {
                self.stats.digestMismatches.add()
                self.logger.warning("upstream blob digest mismatch", metadata: ["digest": "\(digest)", "source": "\(source)"])
                throw RegistryError(.blobUnknown, "upstream content does not match digest \(digest)")
            }
            // Verified: followers may send their last byte now. Durability (fsync, rename, index)
            // follows; if it fails the client still got correct bytes, and nothing is indexed.
            fill.completed(size: ingest.written)
            let written = ingest.written
            sourceClient.countReceived(Int(written))
            let (verified, origin) = (ingest, fill.origin)
            open = false
            let outcome = try await BlockingIO.run { try verified.commit(link: origin) }
            self.stats.fillsCompleted.add()
            self.notifier?.emit(.blobFilled(digest: digest.description, size: written, upstream: upstream.name, repository: repository))
            self.stats.fillFinished(after: ContinuousClock.now - started)
            if case .cached = outcome {
                self.logger.info("blob cached", metadata: [
                    "digest": "\(digest)", "bytes": LogValue.integer(written), "duration_ms": LogValue.milliseconds(ContinuousClock.now - started), "source": "\(source)",
                ])
            }
        } catch {
            if writerOwns { await writer.abort() } else if open { ingest.abort() }
            let cancelled = Task.isCancelled && !(error is RegistryError)
            let failure = cancelled ? RegistryError(.unavailable, "the cache is shutting down") : UpstreamErrors.from(error, kind: .blob)
            self.stats.fillsFailed.add()
            self.logger.warning("blob fill failed", metadata: ["digest": "\(digest)", "error": "\(failure)"])
            fill.failed(failure)  // no effect on followers of an already verified fill
        }
    }

    /// The error a fill fails with, before any follower sent a head, when the cache cannot keep the
    /// blob (no temp file, no room for it on disk): followers stream it from the upstream uncached
    /// (``BlobRelay``) instead.
    static func cannotKeep(_ cause: String) -> RegistryError {
        RegistryError(.unavailable, "the cache cannot store this blob right now", detail: ["reason": Self.cannotKeepReason])
    }

    private static let cannotKeepReason = "cache-cannot-keep"

    /// True for the failure of a fill whose blob the cache cannot keep (see ``cannotKeep(_:)``).
    public static func isCannotKeep(_ error: RegistryError) -> Bool { error.detail["reason"] == Self.cannotKeepReason }

    /// What a client is told when the fill could not write a chunk.
    private static func writeFailure(_ failure: BlobIngest.Failure) -> RegistryError {
        if case .exceedsExpectedSize = failure { return RegistryError(.blobUnknown, "upstream sent more bytes than announced") }
        return RegistryError(.blobUnknown, "cache disk write failed: \(failure)")
    }
}
