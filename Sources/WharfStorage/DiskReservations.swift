#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Disk space promised to fills whose `fallocate` has not run yet.
///
/// A fill's response head goes out once the upstream's head is in and the blob is known to fit:
/// instead of waiting for `fallocate` (0.4 ms on a quiet ext4, tens of ms while another fill's
/// `fsync` holds the journal), the fill asks here, where the file system's free space less the
/// bytes already promised must hold the blob, and its writer allocates the file first thing on its
/// own queue. Promises end once that allocation has run. Two fills that each fit alone but not
/// together are told so before either sends a head; only another program taking the space in
/// between makes an allocation fail later, which fails that fill like an upstream reset.
public final class DiskReservations: Sendable {
    private let promised = Mutex<Int64>(0)
    /// The free bytes of the file system, or nil when it cannot say.
    private let freeBytes: @Sendable () -> Int64?

    /// `freeBytes` reports the file system's free space (see ``freeBytes(at:)``).
    public init(freeBytes: @escaping @Sendable () -> Int64?) {
        self.freeBytes = freeBytes
    }

    /// Bytes promised and not yet allocated.
    public var outstanding: Int64 { self.promised.withLock { $0 } }

    /// True, and `size` promised, when the free space less what is already promised holds `size`;
    /// also true when the file system cannot say (its `fallocate` decides). Every true answer is
    /// followed by one ``settle(_:)`` of the same size.
    public func admit(_ size: Int64) -> Bool {
        guard size > 0 else { return true }
        let free = self.freeBytes()
        return self.promised.withLock { promised in
            if let free, free - promised < size { return false }
            promised += size
            return true
        }
    }

    /// The allocation for an admitted `size` has run (or failed): the promise ends.
    public func settle(_ size: Int64) {
        guard size > 0 else { return }
        self.promised.withLock { promised in
            promised -= size
            precondition(promised >= 0, "more disk space settled than was promised")
        }
    }

    /// The space an unprivileged writer may still take on the file system holding `path`; nil when
    /// `statvfs` fails or the file system reports no blocks at all (some FUSE and network ones).
    public static func freeBytes(at path: String) -> Int64? {
        var s = statvfs()
        guard statvfs(path, &s) == 0, s.f_blocks > 0 else { return nil }
        return Int64(s.f_bavail) * Int64(s.f_frsize)
    }
}
