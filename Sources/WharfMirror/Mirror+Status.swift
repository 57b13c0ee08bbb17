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

    /// `/metrics`: every counter and gauge in Prometheus text format.
    public func prometheusText() -> [UInt8] {
        let allUp = self.upstreams.allSatisfy { $0.health.reachable != false }
        let budgets = self.upstreams.map { u in
            let all = u.rateLimitBudgets
            let shown = all.first { $0.identity == UpstreamIdentity.mirror.cacheKey } ?? all.min { $0.remaining < $1.remaining }
            return MirrorStats.BudgetGauge(upstream: u.configuration.name, budget: shown, refusals: u.budgetRefusals)
        }
        let failovers = self.chains.flatMap { chain in
            chain.fallbacks.map { f in
                let counts = f.failovers
                return MirrorStats.FailoverCounts(
                    upstream: chain.name, fallback: f.label, manifests: counts.manifests, blobs: counts.blobs, unconfirmedTags: counts.tags)
            }
        }
        return self.stats.prometheusText(
            fillsInFlight: self.fills.inFlight, entries: try? self.index.counts(), upstreamUp: allUp, budgets: budgets, failovers: failovers,
            diskUsed: self.budget.occupiedBytes, diskLimit: self.budget.limits?.maxBytes,
            evictedBlobs: self.evictor.counters.evictedBlobs.load(ordering: .relaxed),
            evictedBytes: self.evictor.counters.evictedBytes.load(ordering: .relaxed))
    }
}
