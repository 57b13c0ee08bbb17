import Dispatch
import NIOCore
import OCIDistribution
import Synchronization

/// SHA-256 of a fill's bytes, computed beside the download rather than inside it.
///
/// Chunks are hashed in order on a serial dispatch queue (a thread of its own, never the task
/// pool), so receiving, writing to disk and sending to clients go on while the previous chunks are
/// hashed: on a two-core machine the fill's wall time approaches the slower of the two instead of
/// their sum. At most `maxQueuedBytes` wait to be hashed; past that ``submit(_:)`` suspends (the
/// download is slowed, memory stays bounded).
final class FillHasher: @unchecked Sendable {
    static let maxQueuedBytes = 8 << 20

    private let queue = DispatchQueue(label: "wharf.fill-hash")
    /// Touched only on `queue`.
    private var hasher = StreamingSHA256()
    private struct Pending {
        var bytes = 0
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let pending = Mutex(Pending())

    /// Queues `chunk` for hashing; suspends while too many bytes are already waiting.
    func submit(_ chunk: ByteBuffer) async {
        let size = chunk.readableBytes
        guard size > 0 else { return }
        self.pending.withLock { $0.bytes += size }
        self.queue.async {
            chunk.withUnsafeReadableBytes { self.hasher.update($0) }
            let waiter: CheckedContinuation<Void, Never>? = self.pending.withLock { p in
                p.bytes -= size
                guard p.bytes <= Self.maxQueuedBytes / 2, let w = p.waiter else { return nil }
                p.waiter = nil
                return w
            }
            waiter?.resume()
        }
        if self.pending.withLock({ $0.bytes }) > Self.maxQueuedBytes {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resumeNow = self.pending.withLock { p -> Bool in
                    if p.bytes <= Self.maxQueuedBytes / 2 { return true }
                    p.waiter = c
                    return false
                }
                if resumeNow { c.resume() }
            }
        }
    }

    /// The hex digest of everything submitted, once all of it is hashed.
    func finalize() async -> String {
        await withCheckedContinuation { c in
            self.queue.async { c.resume(returning: self.hasher.finalize()) }
        }
    }
}
