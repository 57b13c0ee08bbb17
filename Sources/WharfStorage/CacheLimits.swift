/// How big the cache may grow and the watermarks that drive eviction.
///
/// When the bytes under `blobs/` pass ``highWatermarkBytes`` the evictor removes least recently used
/// blobs until they are at or under ``lowWatermarkBytes``.
public struct CacheLimits: Sendable, Hashable, CustomStringConvertible {
    /// Thrown for a limit of zero or watermarks that are not `0 < low < high ≤ 100`.
    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    public let maxBytes: Int64
    public let highWatermarkPercent: Int
    public let lowWatermarkPercent: Int

    public init(maxBytes: Int64, highWatermarkPercent: Int = 90, lowWatermarkPercent: Int = 80) throws(Invalid) {
        guard maxBytes > 0 else { throw Invalid(description: "the maximum cache size must be more than 0 bytes") }
        guard lowWatermarkPercent > 0, lowWatermarkPercent < highWatermarkPercent, highWatermarkPercent <= 100 else {
            throw Invalid(description: "watermarks must satisfy 0 < low < high <= 100 (got low \(lowWatermarkPercent), high \(highWatermarkPercent))")
        }
        self.maxBytes = maxBytes
        self.highWatermarkPercent = highWatermarkPercent
        self.lowWatermarkPercent = lowWatermarkPercent
    }

    /// Eviction starts when the cache holds more than this.
    public var highWatermarkBytes: Int64 { Self.percent(self.highWatermarkPercent, of: self.maxBytes) }
    /// Eviction stops when the cache holds this much or less.
    public var lowWatermarkBytes: Int64 { Self.percent(self.lowWatermarkPercent, of: self.maxBytes) }

    public var description: String {
        "max \(self.maxBytes) bytes, evict above \(self.highWatermarkPercent)% down to \(self.lowWatermarkPercent)%"
    }

    private static func percent(_ p: Int, of total: Int64) -> Int64 {
        total / 100 * Int64(p) + total % 100 * Int64(p) / 100  // no overflow for any Int64 total
    }
}
