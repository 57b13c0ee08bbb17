#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NIOCore
import OCIDistribution
import Synchronization
import WharfStorage

/// Writes a fill's bytes into its ``BlobIngest`` on one serial dispatch queue and hashes them on
/// another: the blocking `pwrite` (and `fallocate`) never run on Swift's cooperative pool, and
/// writing (what followers wait for) does not wait for SHA-256, the slower of the two (~1.4 GB/s
/// per core here): a batch goes to the hasher just before it is written, so both run at once on
/// the same buffers (no copy).
///
/// Chunks are written and hashed in the order they were submitted; after each one the fill's
/// followers are told how many bytes are on disk. At most ``maxQueuedBytes`` wait to be written or
/// hashed, and all writers together hold at most their shared ``FillMemory``'s limit; past either,
/// ``submit(_:)`` suspends (the download slows, memory stays bounded). The
/// digest is final only once every chunk is hashed (``finish()``). The first failure is kept:
/// later chunks are dropped and every later call throws it. The ingest is the writer's until
/// ``finish()`` hands it back (to verify and commit) or ``abort()`` removes its temp file, in both
/// cases after every queued write has run.
final class FillWriter: @unchecked Sendable {
    static let maxQueuedBytes = 4 << 20

    private let queue = DispatchQueue(label: "wharf.fill-write")
    private let hashQueue = DispatchQueue(label: "wharf.fill-hash")
    private let fill: BlobFill
    /// The bound shared with every other fill's writer.
    private let memory: FillMemory
    /// Touched only on `queue`.
    private var ingest: BlobIngest
    /// The space promised ahead of `fallocate` on the ingest's file system.
    private let reservations: DiskReservations
    private let tempPath: String
    /// Touched only on `hashQueue`.
    private var hasher = StreamingSHA256()
    /// Bytes the fill has been told are on disk.
    private var reported: Int64 = 0
    /// Up to this many bytes, the fill is told after every chunk (a client's first bytes go out at
    /// once); past it, after every batch.
    static let eagerReportBytes: Int64 = 1 << 20
    /// Set once ``finish()`` or ``abort()`` has handed back or removed the ingest.
    private var ended = false

    private struct Pending {
        /// Submitted, not yet taken by the queue's drain.
        var chunks: [ByteBuffer] = []
        /// A drain is scheduled or running on the queue: it takes every chunk submitted meanwhile.
        var draining = false
        /// Submitted bytes not yet written, and not yet hashed: what is held in memory is the larger.
        var unwritten = 0
        var unhashed = 0
        var bytes: Int { max(self.unwritten, self.unhashed) }
        var waiter: CheckedContinuation<Void, Never>?
        var failure: BlobIngest.Failure?
    }
    private let pending = Mutex(Pending())

    init(ingest: BlobIngest, fill: BlobFill, memory: FillMemory) {
        self.reservations = ingest.reservations
        self.tempPath = ingest.tempPath
        self.ingest = ingest
        self.fill = fill
        self.memory = memory
    }

    /// Sets the blob's size and has it allocated on disk, without waiting for the allocation: throws
    /// at once when the file system's free space, less what other fills were promised, cannot hold
    /// it (``DiskReservations``); otherwise `fallocate` runs first on the writer's queue, ahead of
    /// every write, and if it fails after all (another program took the space) the fill fails with it.
    func expect(size: Int64) throws(BlobIngest.Failure) {
        let reservations = self.reservations
        guard reservations.admit(size) else {
            throw BlobIngest.Failure.system(call: "reserve \(size) bytes", path: self.tempPath, errno: ENOSPC)
        }
        self.queue.async {
            defer { reservations.settle(size) }
            do throws(BlobIngest.Failure) { try self.ingest.expect(size: size) } catch {
                self.pending.withLock { $0.failure = $0.failure ?? error }
            }
        }
    }

    /// Queues `chunk` to be written and hashed; suspends while too many bytes are already waiting.
    /// Throws the failure of an earlier chunk.
    func submit(_ chunk: ByteBuffer) async throws(BlobIngest.Failure) {
        let size = chunk.readableBytes
        guard size > 0 else { return }
        // Counted before the chunk is queued: a drain already running may write, hash and release it
        // at once. (Held bytes are the larger of unwritten and unhashed, so they grow by `size`.)
        let overShared = self.memory.add(size)
        let (failure, schedule) = self.pending.withLock { p -> (BlobIngest.Failure?, Bool) in
            guard p.failure == nil else { return (p.failure, false) }
            p.unwritten += size
            p.unhashed += size
            p.chunks.append(chunk)
            defer { p.draining = true }
            return (nil, !p.draining)
        }
        if let failure {
            self.memory.remove(size)
            throw failure
        }
        // One queue hop per batch, not per chunk: a drain already scheduled takes this chunk too.
        if schedule { self.queue.async { self.drain() } }
        let overOwn = self.pending.withLock { $0.bytes } > Self.maxQueuedBytes
        guard overOwn || overShared else { return }
        if overOwn { await self.waitForOwnQueue() }
        if overShared { await self.memory.waitForRoom() }
        if let failure = self.pending.withLock({ $0.failure }) { throw failure }
    }

    /// Suspends until at most half of ``maxQueuedBytes`` of this writer's bytes are still queued,
    /// or a failure ended the fill.
    private func waitForOwnQueue() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = self.pending.withLock { p -> Bool in
                if p.bytes <= Self.maxQueuedBytes / 2 || p.failure != nil { return true }
                p.waiter = c
                return false
            }
            if resumeNow { c.resume() }
        }
    }

    /// On `queue`: hands every submitted chunk to the hasher and writes it, in order, until none is
    /// left; tells the followers after each batch and releases its queued bytes.
    private func drain() {
        while true {
            let batch: [ByteBuffer]? = self.pending.withLock { p in
                guard !p.chunks.isEmpty else {
                    p.draining = false
                    return nil
                }
                defer { p.chunks = [] }
                return p.chunks
            }
            guard let batch else { return }
            let size = batch.reduce(0) { $0 + $1.readableBytes }
            self.hashQueue.async {
                for chunk in batch { chunk.withUnsafeReadableBytes { self.hasher.update($0) } }
                self.release(hashed: size)
            }
            var failure: BlobIngest.Failure?
            for chunk in batch {
                guard failure == nil, self.pending.withLock({ $0.failure }) == nil else { continue }
                chunk.withUnsafeReadableBytes { raw in
                    do throws(BlobIngest.Failure) { try self.ingest.append(raw) } catch { failure = error }
                }
                if self.reported < Self.eagerReportBytes { self.report() }
            }
            self.report()
            self.release(written: size, failure: failure)
        }
    }

    /// Bytes written or hashed leave the queued count (and the shared ``FillMemory``); wakes a
    /// waiting ``submit(_:)`` when at most half the bound is still held (or a failure ends the fill).
    private func release(written: Int = 0, hashed: Int = 0, failure: BlobIngest.Failure? = nil) {
        let (waiter, shrunk) = self.pending.withLock { p -> (CheckedContinuation<Void, Never>?, Int) in
            let before = p.bytes
            p.unwritten -= written
            p.unhashed -= hashed
            if let failure, p.failure == nil { p.failure = failure }
            let shrunk = before - p.bytes
            guard p.bytes <= Self.maxQueuedBytes / 2 || p.failure != nil, let w = p.waiter else { return (nil, shrunk) }
            p.waiter = nil
            return (w, shrunk)
        }
        self.memory.remove(shrunk)
        waiter?.resume()
    }

    /// On `queue`: tells the fill about bytes written since the last report.
    private func report() {
        guard self.ingest.written > self.reported else { return }
        self.reported = self.ingest.written
        self.fill.progressed(to: self.reported)
    }

    /// Once every queued chunk is written and hashed: the ingest (to verify and commit) and the hex
    /// SHA-256 of everything written; or the first failure, after which the temp file is already gone.
    func finish() async throws(BlobIngest.Failure) -> (ingest: BlobIngest, computedHex: String) {
        let result: Result<(BlobIngest, String), BlobIngest.Failure> = await withCheckedContinuation { c in
            self.queue.async {
                precondition(!self.ended, "a fill writer finished twice")
                self.ended = true
                if let failure = self.pending.withLock({ $0.failure }) {
                    self.ingest.abort()
                    c.resume(returning: .failure(failure))
                    return
                }
                // Every batch went to the hasher before it was written, so it is queued ahead of this.
                let ingest = self.ingest
                self.hashQueue.async { c.resume(returning: .success((ingest, self.hasher.finalize()))) }
            }
        }
        return try result.get()
    }

    /// Gives up: once the queued writes have run (or been dropped), the temp file is unlinked and
    /// its descriptor closed; returns after that. Nothing to do after ``finish()`` or another abort.
    func abort() async {
        self.pending.withLock { $0.failure = $0.failure ?? .system(call: "abort", path: "", errno: 0) }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            self.queue.async {
                if !self.ended { self.ingest.abort() }
                self.ended = true
                c.resume()
            }
        }
    }
}
