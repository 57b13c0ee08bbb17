#if canImport(Glibc)
import Glibc
#endif
import OCIDistribution

/// Descriptors of small blob files kept open for the hit path, like nginx's `open_file_cache`: a
/// hit on a cached file skips `open`, `fstat` and `close` (and building its path).
///
/// Not thread-safe: one instance per event loop, used only on that loop. An entry is used only
/// while no ``BlobFileChanges`` entry names its digest since it was opened (``BlobStore`` records
/// every removal and every publish of a blob file) and its size is the one the index gives, so a
/// scrubbed, evicted or refilled file's old descriptor is never read. Full: the oldest entry is
/// closed (a clock over fixed slots).
public final class OpenBlobFiles {
    private struct Slot {
        let digest: Digest
        let fd: Int32
        let size: Int64
        /// The second of the last access-time update through this cache.
        var touchedAt: UInt64 = 0
    }

    private let store: BlobStore
    private var slots: [Slot?]
    private var byDigest: [Digest: Int] = [:]
    private var free: [Int]
    private var hand = 0
    private var cursor: BlobChangeCursor

    public init(store: BlobStore, capacity: Int) {
        self.store = store
        self.slots = Array(repeating: nil, count: max(0, capacity))
        self.free = Array((0..<max(0, capacity)).reversed())
        self.cursor = BlobChangeCursor(store.changes)
    }

    public var count: Int { self.byDigest.count }

    /// An open descriptor of `digest`'s file, of `size` bytes as the index says, owned by the cache:
    /// read it with `pread` now, never close it or keep it. Nil if the file is missing or differs in
    /// size. `touch` is true the first time in second `now` (access times have one-second resolution).
    public func descriptor(_ digest: Digest, size: Int64, now: UInt64) -> (fd: Int32, touch: Bool)? {
        switch self.cursor.news(self.store.changes) {
        case .none: break
        case .changed(let digests): for d in digests { if let i = self.byDigest[d] { self.drop(at: i) } }
        case .lost: self.closeAll()
        }
        if let i = self.byDigest[digest], let slot = self.slots[i] {
            if slot.size == size {
                guard slot.touchedAt != now else { return (slot.fd, false) }
                self.slots[i]!.touchedAt = now
                return (slot.fd, true)
            }
            self.drop(at: i)
        }
        guard let opened = self.store.open(digest) else { return nil }
        guard opened.size == size, !self.slots.isEmpty else {
            Glibc.close(opened.fd)
            return nil
        }
        let i = self.free.popLast() ?? self.evictOne()
        self.slots[i] = Slot(digest: digest, fd: opened.fd, size: opened.size, touchedAt: now)
        self.byDigest[digest] = i
        return (opened.fd, true)
    }

    /// Closes every descriptor (at shutdown).
    public func closeAll() {
        for i in self.slots.indices where self.slots[i] != nil { self.drop(at: i) }
    }

    private func evictOne() -> Int {
        let i = self.hand
        self.hand = (self.hand + 1) % self.slots.count
        self.drop(at: i)
        return self.free.removeLast()
    }

    private func drop(at i: Int) {
        guard let slot = self.slots[i] else { return }
        Glibc.close(slot.fd)
        self.slots[i] = nil
        self.byDigest[slot.digest] = nil
        self.free.append(i)
    }
}
