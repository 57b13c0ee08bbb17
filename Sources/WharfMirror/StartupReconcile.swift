#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization
import WharfLogging
import WharfStorage

/// The index ↔ disk agreement check that a server runs once, in the background, after it is listening.
///
/// The start itself only empties `tmp/` (cheap at any cache size). This check first builds the index's
/// eviction order if an older Wharf made the index (``CacheIndex/buildAccessOrder(window:)``), then stats every indexed
/// file and lists `blobs/`, which at a million entries takes seconds: requests are served meanwhile,
/// and the blob endpoint already treats a missing or short file as a miss. Files written since this
/// process started and blobs being filled or served are never touched.
public final class StartupReconcile: Sendable {
    /// Wall-clock start of this process's cache, in nanoseconds since the epoch.
    public let startedAtNanoseconds: Int64
    private let finished = Mutex<CacheReconciler.Report?>(nil)
    private let reconciler: CacheReconciler
    private let index: CacheIndex
    private let fills: BlobFills
    private let serving: ServingRegistry
    private let logger: Logger

    public init(index: CacheIndex, store: BlobStore, fills: BlobFills, serving: ServingRegistry, logger: Logger) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        self.startedAtNanoseconds = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
        self.reconciler = CacheReconciler(index: index, store: store)
        self.index = index
        self.fills = fills
        self.serving = serving
        self.logger = logger
    }

    /// The report of the finished check; nil while it has not run to the end.
    public var report: CacheReconciler.Report? { self.finished.withLock { $0 } }

    /// Runs the check once on its own thread. Cancelling the calling task (a shutdown) stops the
    /// check between two batches: at ten million entries it would otherwise hold the shutdown for minutes.
    public func run() async {
        guard !Task.isCancelled else { return }
        let started = ContinuousClock.now
        let stop = Atomic<Bool>(false)
        let result: Result<CacheReconciler.Report?, any Error> = await withTaskCancellationHandler {
            await Evictor.onOwnThread {
                Result { try self.check(shouldStop: { stop.load(ordering: .relaxed) }) }
            }
        } onCancel: {
            stop.store(true, ordering: .relaxed)
        }
        switch result {
        case .success(let report?):
            self.finished.withLock { $0 = report }
            self.logger.notice("cache check finished", metadata: [
                "entries": "\(report.entriesChecked)", "dropped-entries": "\(report.entriesDropped)",
                "files": "\(report.filesChecked)", "removed-orphans": "\(report.orphansRemoved)",
                "foreign-files": "\(report.foreignFiles)", "duration_ms": LogValue.milliseconds(ContinuousClock.now - started),
            ])
        case .success(nil):
            self.logger.notice("cache check stopped by shutdown", metadata: ["duration_ms": LogValue.milliseconds(ContinuousClock.now - started)])
        case .failure(let error):
            self.logger.error("cache check failed", metadata: ["error": "\(error)"])
        }
    }

    /// The check itself, blocking; nil when `shouldStop` ended it before the end.
    func check(shouldStop: () -> Bool) throws -> CacheReconciler.Report? {
        // An index from an older Wharf gets its eviction order here, once (until then
        // eviction scans every record); 45 s at 10,000,000 blobs, requests served meanwhile.
        let built = try self.index.buildAccessOrder(shouldStop: shouldStop)
        if built > 0 { self.logger.notice("built the index's eviction order", metadata: ["blobs": "\(built)"]) }
        var report = CacheReconciler.Report()
        try self.reconciler.dropEntriesWithoutFiles(dryRun: false, into: &report, shouldStop: shouldStop)
        try self.reconciler.removeOrphanFiles(
            dryRun: false, modifiedBefore: self.startedAtNanoseconds,
            isInUse: { self.fills.isFilling($0) || self.serving.isServing($0) }, into: &report, shouldStop: shouldStop)
        return shouldStop() ? nil : report
    }
}
