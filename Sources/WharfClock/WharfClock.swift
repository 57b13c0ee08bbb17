#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The time behind every time-based decision Wharf makes (tag TTLs, last-access stamps for LRU
/// eviction, upstream token refresh, cached pull grants).
///
/// In production it is the system's time. A test makes one with ``init(skip:)`` and moves it forward
/// instead of sleeping through a TTL: both readings are the system's plus the skip, so the clock only
/// ever moves forward and times it stamped earlier stay comparable.
public struct WharfClock: Sendable {
    private let skip: (@Sendable () -> Duration)?

    /// The system's clocks.
    public static let system = WharfClock(skip: nil)

    /// The system's clocks read `skip()` ahead (a test clock; `skip` must never decrease).
    public init(skip: (@Sendable () -> Duration)?) {
        self.skip = skip
    }

    /// Seconds since the epoch, the unit the cache index records times in.
    public func wallSeconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let seconds = UInt64(max(0, ts.tv_sec))
        guard let skip else { return seconds }
        return seconds + UInt64(max(0, skip().components.seconds))
    }

    /// Seconds since the epoch with their fraction (the dashboard's time axis).
    public func wallTime() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let seconds = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        guard let skip else { return seconds }
        let s = skip().components
        return seconds + Double(s.seconds) + Double(s.attoseconds) / 1e18
    }

    /// A monotonic instant, for deadlines and lifetimes measured in process (tokens, grants).
    public func now() -> ContinuousClock.Instant {
        guard let skip else { return .now }
        return .now + skip()
    }
}
