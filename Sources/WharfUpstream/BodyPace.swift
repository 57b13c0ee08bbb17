import NIOCore

/// The slowest an upstream blob body may be: at least ``minimumBytes`` in every ``window`` of time
/// the body is being read. The idle timeout alone would let a body of one byte every 29 s hold a fill,
/// its followers and a pooled connection for ever. Time while Wharf itself stopped reading (its disk
/// or hash is behind: ``StreamedBodyState`` paused the producer) does not count: each resume starts a
/// new window. A value with no I/O; the time comes in with each event.
public struct BodyPace: Sendable, Equatable {
    public let minimumBytes: Int
    public let window: TimeAmount

    /// 64 KiB a minute (about 1 KiB/s): far below any link a registry is pulled over.
    public static let `default` = BodyPace(minimumBytes: 64 << 10, window: .seconds(60))

    public init(minimumBytes: Int, window: TimeAmount) {
        self.minimumBytes = minimumBytes
        self.window = window
    }

    /// The meter of one body.
    struct Meter {
        let pace: BodyPace
        private var windowStart: NIODeadline
        private var bytes = 0

        init(_ pace: BodyPace, now: NIODeadline) {
            self.pace = pace
            self.windowStart = now
        }

        /// `count` bytes arrived at `now`; false when the window that ended before them held too few.
        mutating func received(_ count: Int, now: NIODeadline) -> Bool {
            if now - self.windowStart >= self.pace.window {
                guard self.bytes >= self.pace.minimumBytes else { return false }
                self.windowStart = now
                self.bytes = 0
            }
            self.bytes += count
            return true
        }

        /// Reading starts again after a pause of Wharf's own: a new window from `now`.
        mutating func restart(now: NIODeadline) {
            self.windowStart = now
            self.bytes = 0
        }
    }
}

/// An upstream blob body arrived slower than ``BodyPace`` allows.
public struct UpstreamBodyTooSlow: Error, CustomStringConvertible {
    public let pace: BodyPace
    public var description: String {
        "the upstream sent fewer than \(self.pace.minimumBytes) bytes in \(self.pace.window.nanoseconds / 1_000_000_000) s"
    }
}
