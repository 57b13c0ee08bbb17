import OCIDistribution
import Synchronization

/// Blob files removed or replaced, in order, so caches of open descriptors can drop theirs.
///
/// Every unlink or rename of a published blob file is recorded here (``BlobStore`` does it). A
/// reader remembers the sequence number it has seen; the number alone is one atomic load, so the
/// common case (nothing changed) costs nothing more.
public final class BlobFileChanges: Sendable {
    /// Changes kept for readers that fall behind; a reader further behind drops everything.
    static let kept = 512
    private let sequence = Atomic<UInt64>(0)
    private let log = Mutex<[Digest]>([])

    public init() {}

    public var current: UInt64 { self.sequence.load(ordering: .acquiring) }

    func record(_ digest: Digest) {
        self.log.withLock { log in
            if log.count == Self.kept { log.removeFirst(Self.kept / 2) }
            log.append(digest)
            self.sequence.add(1, ordering: .releasing)
        }
    }

    /// The digests changed after `seen` and the new sequence number; nil digests: too far behind.
    func changes(since seen: UInt64) -> (digests: [Digest]?, now: UInt64) {
        self.log.withLock { log in
            let now = self.sequence.load(ordering: .relaxed)
            let missed = Int(now - seen)
            return (missed <= log.count ? Array(log.suffix(missed)) : nil, now)
        }
    }
}

/// Where one reader of ``BlobFileChanges`` is: what changed since it last asked. A cache of
/// anything read from blob files keeps one and drops what ``news(_:)`` names.
public struct BlobChangeCursor: Sendable {
    private var seen: UInt64

    public enum News: Equatable, Sendable {
        /// Nothing changed (one atomic load).
        case none
        /// These files were removed or replaced.
        case changed([Digest])
        /// The reader fell further behind than the log keeps: anything may have changed.
        case lost
    }

    /// The log position the cursor has reached.
    public var position: UInt64 { self.seen }

    /// A cursor at the log's current end.
    public init(_ changes: BlobFileChanges) { self.seen = changes.current }

    /// What changed since the last call, moving the cursor to the end of the log.
    public mutating func news(_ changes: BlobFileChanges) -> News {
        guard changes.current != self.seen else { return .none }
        let (digests, now) = changes.changes(since: self.seen)
        self.seen = now
        return digests.map { .changed($0) } ?? .lost
    }
}

