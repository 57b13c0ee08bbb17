/// The last hour of the mirror's counters, sampled at a fixed interval into a ring buffer, and the
/// rates the dashboard charts derive from consecutive samples. A value: no clock reads, no I/O.
public struct MetricsHistory: Sendable {
    /// Cumulative counters (and the fills gauge) at one instant.
    public struct Sample: Sendable, Equatable {
        /// Wall-clock seconds (fractional).
        public var time: Double
        public var requests: Int
        public var hits: Int
        public var misses: Int
        public var bytesFromDisk: Int
        public var bytesFromFills: Int
        public var bytesFromRanges: Int
        public var bytesFetched: Int
        public var fillsInFlight: Int
        /// Upstream answers and the sum of their first-byte times, over every upstream.
        public var upstreamAnswers: Int
        public var upstreamLatencyNanoseconds: Int

        public init(
            time: Double, requests: Int = 0, hits: Int = 0, misses: Int = 0, bytesFromDisk: Int = 0, bytesFromFills: Int = 0, bytesFromRanges: Int = 0,
            bytesFetched: Int = 0, fillsInFlight: Int = 0, upstreamAnswers: Int = 0, upstreamLatencyNanoseconds: Int = 0
        ) {
            self.time = time
            self.requests = requests
            self.hits = hits
            self.misses = misses
            self.bytesFromDisk = bytesFromDisk
            self.bytesFromFills = bytesFromFills
            self.bytesFromRanges = bytesFromRanges
            self.bytesFetched = bytesFetched
            self.fillsInFlight = fillsInFlight
            self.upstreamAnswers = upstreamAnswers
            self.upstreamLatencyNanoseconds = upstreamLatencyNanoseconds
        }
    }

    /// One chart's points: (wall-clock seconds at the end of an interval, value); nil where the
    /// interval had nothing to measure (no requests for a ratio, no upstream answer for a latency).
    public struct Series: Sendable, Equatable {
        public let name: String
        public let unit: String
        public var points: [(time: Double, value: Double?)]

        public static func == (a: Series, b: Series) -> Bool {
            a.name == b.name && a.unit == b.unit && a.points.elementsEqual(b.points) { $0.time == $1.time && $0.value == $1.value }
        }
    }

    public let capacity: Int
    private var ring: [Sample] = []
    private var start = 0

    /// Keeps `capacity` samples (an hour at one per 10 s: 361).
    public init(capacity: Int = 361) {
        precondition(capacity >= 2)
        self.capacity = capacity
    }

    public mutating func record(_ sample: Sample) {
        if self.ring.count < self.capacity {
            self.ring.append(sample)
        } else {
            self.ring[self.start] = sample
            self.start = (self.start + 1) % self.capacity
        }
    }

    /// The samples, oldest first.
    public var samples: [Sample] { Array(self.ring[self.start...] + self.ring[..<self.start]) }

    /// Hit ratio by requests and by bytes, requests per second, bytes per second from disk and from the
    /// upstream, fills in flight, and upstream first-byte latency, one point per interval.
    public var series: [Series] {
        let s = self.samples
        var out = [
            Series(name: "Hit ratio (requests)", unit: "%", points: []), Series(name: "Hit ratio (bytes)", unit: "%", points: []),
            Series(name: "Requests per second", unit: "req/s", points: []), Series(name: "Served from disk", unit: "B/s", points: []),
            Series(name: "Fetched from upstream", unit: "B/s", points: []), Series(name: "Fills in flight", unit: "", points: []),
            Series(name: "Upstream latency (first byte)", unit: "ms", points: []),
        ]
        for (a, b) in zip(s, s.dropFirst()) {
            let dt = b.time - a.time
            guard dt > 0 else { continue }
            let hits = Double(b.hits - a.hits), lookups = Double(b.hits - a.hits + b.misses - a.misses)
            let disk = Double(b.bytesFromDisk - a.bytesFromDisk)
            let served = disk + Double(b.bytesFromFills - a.bytesFromFills + b.bytesFromRanges - a.bytesFromRanges)
            let answers = b.upstreamAnswers - a.upstreamAnswers
            let values: [Double?] = [
                lookups > 0 ? 100 * hits / lookups : nil, served > 0 ? 100 * disk / served : nil, Double(b.requests - a.requests) / dt,
                disk / dt, Double(b.bytesFetched - a.bytesFetched) / dt, Double(b.fillsInFlight),
                answers > 0 ? Double(b.upstreamLatencyNanoseconds - a.upstreamLatencyNanoseconds) / Double(answers) / 1e6 : nil,
            ]
            for i in out.indices { out[i].points.append((b.time, values[i])) }
        }
        return out
    }
}
