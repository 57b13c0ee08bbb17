import Logging
import OCIDistribution
import Synchronization

/// What the cache may hold and what it holds now: the running total of blob bytes, the blobs being
/// published, and the admission decision for each verified blob.
///
/// ``CacheIndex`` reports every change of its stored total here; ``BlobIngest/commit(link:computedHex:)``
/// asks ``admit(_:size:)`` before a verified blob is renamed into `blobs/`, and returns the decision
/// to its caller. A declined fill has already reached its clients from the temp file; it is
/// unlinked instead of published.
public final class CacheBudget: Sendable {
    private struct State {
        /// Bytes of the blobs recorded in the index.
        var indexed: Int64 = 0
        /// Verified blobs admitted by ``admit(_:size:)`` whose index commit has not been seen yet.
        var publishing: [Digest: Int64] = [:]
    }

    /// Nil: the cache is unbounded and nothing is ever evicted or declined.
    public let limits: CacheLimits?
    /// Fills served but not cached because they could never stay under the limit.
    public let declinedFills = Atomic<Int>(0)
    public let declinedBytes = Atomic<Int64>(0)

    private let state = Mutex(State())
    private let pressure = WakeSignal()
    private let logger: Logger

    public init(limits: CacheLimits?, logger: Logger) {
        self.limits = limits
        self.logger = logger
    }

    /// Bytes of the blobs recorded in the index.
    public var indexedBytes: Int64 { self.state.withLock { $0.indexed } }
    /// Bytes admitted and being renamed/committed right now.
    public var publishingBytes: Int64 { self.state.withLock { $0.publishing.values.reduce(0, +) } }
    /// Everything under `blobs/` that the budget knows of: indexed plus publishing.
    public var occupiedBytes: Int64 { self.state.withLock { $0.indexed + $0.publishing.values.reduce(0, +) } }

    /// True when the cache holds more than its high watermark.
    public var needsEviction: Bool {
        guard let limits else { return false }
        return self.occupiedBytes > limits.highWatermarkBytes
    }

    /// Whether a verified blob of `size` bytes is kept: nil if it is, else why not. A blob larger
    /// than the high watermark never is: keeping it would start an eviction that, after everything
    /// older, removes the blob itself. Admitted blobs count as occupied at once (until their index
    /// commit, or ``withdraw(_:)``), and wake the evictor when they pass the high mark.
    public func admit(_ digest: Digest, size: Int64) -> BlobIngest.DeclineReason? {
        guard let limits else { return nil }
        guard size <= limits.highWatermarkBytes else {
            self.declinedFills.add(1, ordering: .relaxed)
            self.declinedBytes.add(size, ordering: .relaxed)
            self.logger.notice("blob larger than the cache's high watermark: served, not cached", metadata: [
                "digest": "\(digest)", "bytes": "\(size)", "high-watermark": "\(limits.highWatermarkBytes)",
            ])
            return .largerThanHighWatermark(size: size, highWatermark: limits.highWatermarkBytes)
        }
        self.state.withLock { $0.publishing[digest] = size }
        if self.needsEviction { self.pressure.fire() }
        return nil
    }

    /// An admitted blob will not be committed after all (its publish failed).
    public func withdraw(_ digest: Digest) {
        self.state.withLock { _ = $0.publishing.removeValue(forKey: digest) }
    }

    /// Suspends until an admitted blob pushed the cache past its high watermark, or `timeout` passes.
    /// One task (the evictor) waits at a time.
    public func waitForPressure(timeout: Duration) async {
        await self.pressure.wait(timeout: timeout)
    }

    /// Forgets admitted blobs whose fill ended without a commit (the caller knows which fills run).
    /// `ended` runs under the budget's lock: it may take other locks but must not call the budget.
    public func forgetPublishing(where ended: (Digest) -> Bool) {
        self.state.withLock { s in
            s.publishing = s.publishing.filter { !ended($0.key) }
        }
    }

    // MARK: Called by the index

    /// The index's stored total is now `total`; `committed` (if any) is no longer publishing.
    func indexChanged(total: Int64, committed: Digest?) {
        self.state.withLock { s in
            s.indexed = total
            if let committed { s.publishing.removeValue(forKey: committed) }
        }
        if self.needsEviction { self.pressure.fire() }
    }
}
