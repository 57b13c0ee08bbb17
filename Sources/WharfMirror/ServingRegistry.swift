import OCIDistribution
import Synchronization

/// The digests being sent to clients right now, reference-counted, so the evictor never picks one.
///
/// The blob endpoint marks a digest before it looks the blob up and releases the mark when the
/// response is done:
///
/// ```swift
/// let mark = mirror.serving.markServing(digest)
/// defer { mark.release() }
/// ```
public final class ServingRegistry: Sendable {
    private let counts = Mutex<[Digest: Int]>([:])

    public init() {}

    /// Marks `digest` as being served until the returned mark is released (or deallocated).
    public func markServing(_ digest: Digest) -> ServingMark {
        self.counts.withLock { $0[digest, default: 0] += 1 }
        return ServingMark(registry: self, digest: digest)
    }

    /// True while at least one mark for `digest` is held.
    public func isServing(_ digest: Digest) -> Bool {
        self.counts.withLock { $0[digest] != nil }
    }

    /// How many distinct digests are being served.
    public var count: Int { self.counts.withLock { $0.count } }

    fileprivate func release(_ digest: Digest) {
        self.counts.withLock { counts in
            guard let n = counts[digest] else { return }
            counts[digest] = n > 1 ? n - 1 : nil
        }
    }
}

/// One hold on a digest in a ``ServingRegistry``. ``release()`` is idempotent; deallocation releases too.
public final class ServingMark: Sendable {
    private let registry: ServingRegistry
    private let digest: Digest
    private let released = Atomic<Bool>(false)

    fileprivate init(registry: ServingRegistry, digest: Digest) {
        self.registry = registry
        self.digest = digest
    }

    public func release() {
        guard !self.released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        self.registry.release(self.digest)
    }

    deinit { self.release() }
}
