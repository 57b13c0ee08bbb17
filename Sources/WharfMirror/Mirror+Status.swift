import Foundation
import Synchronization
import WharfClock
import WharfStorage
import WharfUpstream

/// The questions the status pages ask of the mirror.
extension Mirror {
    /// Nil when ready: the index answers and the cache folder takes writes.
    public func readinessProblem() -> String? {
        do { _ = try self.index.counts() } catch { return "index unavailable: \(error)" }
        let probe = self.layout.tempDirectory + "/.ready-probe-\(UInt32.random(in: 0...UInt32.max))"
        guard FileManager.default.createFile(atPath: probe, contents: Data("ok".utf8)) else { return "cache folder is not writable" }
        try? FileManager.default.removeItem(atPath: probe)
        return nil
    }

    /// Each upstream's name and whether its last request got an answer (nil: none yet).
    public func upstreamReachability() -> [(name: String, reachable: Bool?)] {
        self.upstreams.map { ($0.configuration.name, $0.health.reachable) }
    }

    /// Seconds since the epoch, on the clock the index stamps times with.
    public func wallSeconds() -> UInt64 { self.index.clock.wallSeconds() }

    /// The `/stats` document; `showNames`: whether it may name repositories.
    public func statsSnapshot(showNames: Bool) -> StatsSnapshot { StatsSnapshot(mirror: self, showNames: showNames) }

    /// `/metrics`: every counter, histogram and gauge in Prometheus text format. The gauges and the
    /// upstreams' figures are written from the same snapshot `/stats` shows (without repository names).
    public func prometheusText() -> [UInt8] {
        self.stats.prometheusText(StatsSnapshot(mirror: self, showNames: false))
    }
}
