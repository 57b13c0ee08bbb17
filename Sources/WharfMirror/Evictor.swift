import Foundation
import Logging
import OCIDistribution
import Synchronization
import WharfLogging
import WharfStorage

/// Size-bounded LRU eviction in the background.
///
/// When the cache passes its high watermark (checked when a fill is admitted or committed, and once
/// a second), the evictor flushes pending last-access times, picks the least recently used blobs
/// (``CacheIndex/leastRecentlyUsed(limit:excluding:)``, 1,000 per pass) and removes them until the
/// cache is at or under the low watermark: each batch is one index write transaction, then the files
/// are unlinked. It never picks a blob whose fill runs or that a client is being sent; a blob hit
/// after it was picked is spared, and so is every blob of a pinned image (``PinnedImages``). The work
/// runs on its own thread, off the request path.
public final class Evictor: Sendable {
    /// Blobs picked per pass.
    public static let batchSize = 1000

    public let budget: CacheBudget
    public let counters = EvictionCounters()
    private let index: CacheIndex
    private let store: BlobStore
    private let fills: BlobFills
    private let serving: ServingRegistry
    private let pins: PinSet
    private let notifier: Notifier?
    private let logger: Logger

    public init(
        index: CacheIndex, store: BlobStore, budget: CacheBudget, fills: BlobFills, serving: ServingRegistry,
        pins: PinSet, notifier: Notifier? = nil, logger: Logger
    ) {
        self.pins = pins
        self.notifier = notifier
        self.index = index
        self.store = store
        self.budget = budget
        self.fills = fills
        self.serving = serving
        self.logger = logger
    }

    /// Evicts whenever the cache is over its high watermark, until the task is cancelled.
    public func run() async {
        guard self.budget.limits != nil else { return }
        while !Task.isCancelled {
            if self.budget.needsEviction {
                _ = await Self.onOwnThread { self.evictToLowWatermark() }
            }
            await self.budget.waitForPressure(timeout: .seconds(1))
        }
    }

    /// One eviction round, synchronously: frees down to the low watermark as far as blobs not in use
    /// allow. Returns how many blobs and bytes were removed.
    @discardableResult
    public func evictToLowWatermark() -> (blobs: Int, bytes: Int64) {
        guard let limits = self.budget.limits else { return (0, 0) }
        let started = ContinuousClock.now
        self.budget.forgetPublishing { !self.fills.isFilling($0) }
        var removedBlobs = 0
        var removedBytes: Int64 = 0
        do {
            try self.index.flushAccessTimes()
            let pinned = self.pins.current.reduce(into: Set<Digest>()) { $0.formUnion($1.images.blobDigests(index: self.index, upstream: $1.upstream)) }
            var spared = pinned
            while self.budget.occupiedBytes > limits.lowWatermarkBytes {
                let excess = self.budget.occupiedBytes - limits.lowWatermarkBytes
                let oldest = try self.index.leastRecentlyUsed(limit: Self.batchSize, excluding: spared)
                guard !oldest.isEmpty else { break }
                var picked: [Digest: UInt64] = [:]
                var victims: [Digest] = []
                var planned: Int64 = 0
                for (digest, record) in oldest where planned < excess {
                    if self.inUse(digest) || pinned.contains(digest) {
                        spared.insert(digest)
                        continue
                    }
                    victims.append(digest)
                    picked[digest] = record.lastAccess
                    planned += record.size
                }
                if victims.isEmpty {
                    if oldest.count < Self.batchSize { break }  // everything left is in use
                    continue
                }
                let removed = try self.index.removeBlobs(victims) { digest, record in
                    record.lastAccess == picked[digest] && !self.index.hasPendingTouch(digest) && !self.inUse(digest)
                }
                for (digest, record) in removed {
                    if !self.fills.isFilling(digest) { self.store.remove(digest) }  // a new fill will rename over it
                    removedBytes += record.size
                }
                removedBlobs += removed.count
                let gone = Set(removed.map(\.digest))
                spared.formUnion(victims.filter { !gone.contains($0) })  // hit or taken into use since picked
            }
        } catch {
            self.logger.error("eviction failed", metadata: ["error": "\(error)"])
        }
        self.counters.record(blobs: removedBlobs, bytes: removedBytes)
        if removedBlobs > 0 { self.notifier?.emit(.evicted(blobs: removedBlobs, bytes: removedBytes)) }
        if removedBlobs > 0 {
            self.logger.info("evicted least recently used blobs", metadata: [
                "blobs": "\(removedBlobs)", "bytes": "\(removedBytes)", "cache-bytes": "\(self.budget.occupiedBytes)",
                "duration_ms": LogValue.milliseconds(ContinuousClock.now - started),
            ])
        }
        return (removedBlobs, removedBytes)
    }

    private func inUse(_ digest: Digest) -> Bool {
        self.fills.isFilling(digest) || self.serving.isServing(digest)
    }

    /// Runs blocking work (LMDB scans, unlinks, stats) on a dedicated thread, never on the
    /// cooperative pool that serves requests.
    static func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { c in
            Thread.detachNewThread { c.resume(returning: work()) }
        }
    }
}

/// What eviction has done since start, for `/stats` and `/metrics`.
public final class EvictionCounters: Sendable {
    /// Blobs removed because the cache passed its high watermark (reason `lru`).
    public let evictedBlobs = Atomic<Int>(0)
    public let evictedBytes = Atomic<Int64>(0)
    /// Eviction rounds run.
    public let passes = Atomic<Int>(0)

    func record(blobs: Int, bytes: Int64) {
        self.passes.add(1, ordering: .relaxed)
        self.evictedBlobs.add(blobs, ordering: .relaxed)
        self.evictedBytes.add(bytes, ordering: .relaxed)
    }
}
