#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import Synchronization
import WharfStorage

/// One event loop's open-file cache for small blob hits (``OpenBlobFiles``), passed to
/// ``ReadService/cachedBlob(_:_:files:)``; use it only on its loop.
public struct LoopOpenFiles {
    let cache: OpenBlobFiles
}

/// One ``OpenBlobFiles`` per event loop, made on first use on that loop.
public final class OpenFilesPerLoop: Sendable {
    private let store: BlobStore
    private let capacity: Int
    private let caches = Mutex<[ObjectIdentifier: NIOLoopBound<OpenBlobFiles>]>([:])

    public init(mirror: Mirror, capacity: Int) {
        self.store = mirror.store
        self.capacity = capacity
    }

    /// The cache of `loop`; call on `loop`.
    public func forLoop(_ loop: any EventLoop) -> LoopOpenFiles {
        self.caches.withLock { caches in
            if let bound = caches[ObjectIdentifier(loop)] { return LoopOpenFiles(cache: bound.value) }
            let cache = OpenBlobFiles(store: self.store, capacity: self.capacity)
            caches[ObjectIdentifier(loop)] = NIOLoopBound(cache, eventLoop: loop)
            return LoopOpenFiles(cache: cache)
        }
    }

    /// Closes every cached descriptor, each on its own loop.
    public func closeAll() async {
        for bound in self.caches.withLock({ Array($0.values) }) {
            try? await bound.eventLoop.submit { bound.value.closeAll() }.get()
        }
    }

    /// An eighth of the open-files limit, at most 4096.
    public static func defaultCapacity() -> Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        return Int(min(4096, limit.rlim_cur / 8))
    }
}
