import Testing
@testable import WharfMirror

/// The dashboard's ring buffer and the rates it derives.
@Suite(.tags(.unit)) struct MetricsHistoryTests {
    @Test("keeps the newest samples, oldest first, once full")
    func ring() {
        var h = MetricsHistory(capacity: 3)
        for t in 0..<5 { h.record(.init(time: Double(t), requests: t)) }
        #expect(h.samples.map(\.time) == [2, 3, 4])
    }

    @Test("rates and ratios per interval; nothing measured is a gap, not a zero")
    func series() {
        var h = MetricsHistory(capacity: 10)
        h.record(.init(time: 100))
        h.record(.init(time: 110, requests: 50, hits: 30, misses: 10, bytesFromDisk: 3000, bytesFromFills: 1000, bytesFetched: 1000,
                       fillsInFlight: 2, upstreamAnswers: 4, upstreamLatencyNanoseconds: 40_000_000))
        h.record(.init(time: 120, requests: 50, hits: 30, misses: 10, bytesFromDisk: 3000, bytesFromFills: 1000, bytesFetched: 1000,
                       upstreamAnswers: 4, upstreamLatencyNanoseconds: 40_000_000))
        let s = Dictionary(uniqueKeysWithValues: h.series.map { ($0.name, $0.points.map(\.value)) })
        #expect(s["Hit ratio (requests)"] == [75, nil])
        #expect(s["Hit ratio (bytes)"] == [75, nil])
        #expect(s["Requests per second"] == [5, 0])
        #expect(s["Served from disk"] == [300, 0])
        #expect(s["Fetched from upstream"] == [100, 0])
        #expect(s["Fills in flight"] == [2, 0])
        #expect(s["Upstream latency (first byte)"] == [10, nil])
        #expect(h.series.allSatisfy { $0.points.map(\.time) == [110, 120] })
    }

    @Test("the catalog's page cursor round-trips and refuses garbage")
    func cursor() {
        let key: [UInt8] = [0x61, 0, 0xff, 0x10]
        #expect(CacheCatalog.decodeCursor(CacheCatalog.encodeCursor(key)) == key)
        for bad in ["abc", "zz", String(repeating: "a", count: 2000)] { #expect(CacheCatalog.decodeCursor(bad) == nil) }
    }
}
