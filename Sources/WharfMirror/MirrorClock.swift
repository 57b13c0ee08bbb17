import WharfStorage

/// The wall clock behind the mirror's time-based decisions (tag TTLs): the system clock, or in tests
/// one that can be moved forward, so a test of a TTL does not sleep through it.
public struct MirrorClock: Sendable {
    /// Seconds since the epoch, the unit the index records times in.
    public let wallSeconds: @Sendable () -> UInt64

    public init(wallSeconds: @escaping @Sendable () -> UInt64) {
        self.wallSeconds = wallSeconds
    }

    public static let system = MirrorClock { Clock.seconds() }
}
