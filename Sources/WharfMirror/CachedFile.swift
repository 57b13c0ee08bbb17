#if canImport(Glibc)
import Glibc
#endif

/// A cached blob file handed to the HTTP layer to send: owns its descriptor (or borrows one of the
/// event loop's open-file cache for the length of a synchronous answer) and holds the blob as
/// being served, so the evictor spares it until the bytes are out.
///
/// Non-copyable: exactly one owner sends it. Dropping it closes what it owns and releases the hold;
/// ``handOff()`` passes both to whoever finishes sending (a `FileRegion`'s completion).
public struct CachedFile: ~Copyable {
    /// The open descriptor, positioned nowhere (read with `pread` or sendfile from an offset).
    public private(set) var descriptor: Int32
    /// The file's size, equal to the index record's.
    public let size: Int64
    private let owned: Bool
    private var mark: ServingMark?

    init(descriptor: Int32, size: Int64, owned: Bool, mark: ServingMark?) {
        self.descriptor = descriptor
        self.size = size
        self.owned = owned
        self.mark = mark
    }

    /// True when the descriptor belongs to the loop's open-file cache (read it now, never close it).
    public var isBorrowed: Bool { !self.owned }

    /// The descriptor (owned by the caller from now on) and what to call once it has been sent.
    /// A borrowed descriptor is duplicated first, so the caller can always close what it gets.
    public consuming func handOff() -> (descriptor: Int32, finished: @Sendable () -> Void) {
        let fd = self.owned ? self.descriptor : dup(self.descriptor)
        let mark = self.mark
        self.descriptor = -1
        self.mark = nil
        return (fd, { mark?.release() })
    }

    deinit {
        if self.owned, self.descriptor >= 0 { close(self.descriptor) }
        self.mark?.release()
    }
}
