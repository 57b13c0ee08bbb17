import WharfUpstream
import WharfText

/// The metric families `/metrics` writes at scrape time from the `/stats` snapshot (and `/proc`),
/// rather than keeping them in the Prometheus registry: so `/stats` and `/metrics` show the same
/// figures, and a value that is not known is an absent series, never a `-1`.
public enum ScrapeFamily: String, Sendable, CaseIterable {
    case buildInfo = "wharf_build_info"
    case fillsInFlight = "wharf_fills_in_flight"
    case cacheEntries = "wharf_cache_entries"
    case diskUsed = "wharf_disk_used_bytes"
    case diskLimit = "wharf_disk_limit_bytes"
    case diskHighWatermark = "wharf_disk_high_watermark_bytes"
    case diskLowWatermark = "wharf_disk_low_watermark_bytes"
    case evictions = "wharf_evictions_total"
    case evictedBytes = "wharf_evicted_bytes_total"
    case evictionPasses = "wharf_eviction_passes_total"
    case declinedFills = "wharf_declined_fills_total"
    case declinedBytes = "wharf_declined_bytes_total"
    case upstreamUp = "wharf_upstream_up"
    case upstreamCircuitOpen = "wharf_upstream_circuit_open"
    case upstreamRequests = "wharf_upstream_requests_total"
    case upstreamErrors = "wharf_upstream_errors_total"
    case upstreamBytes = "wharf_upstream_bytes_total"
    case rateLimitRemaining = "wharf_upstream_ratelimit_remaining"
    case rateLimitLimit = "wharf_upstream_ratelimit_limit"
    case rateLimitReserve = "wharf_upstream_ratelimit_reserve"
    case budgetRefusals = "wharf_ratelimit_budget_refusals_total"
    case failovers = "wharf_upstream_failovers_total"
    case unconfirmedTags = "wharf_upstream_unconfirmed_tags_total"
    case fallbackUp = "wharf_upstream_fallback_up"
    case processCPU = "process_cpu_seconds_total"
    case processResident = "process_resident_memory_bytes"
    case processVirtual = "process_virtual_memory_bytes"
    case processOpenFDs = "process_open_fds"
    case processMaxFDs = "process_max_fds"
    case processStartTime = "process_start_time_seconds"

    var isCounter: Bool { self.rawValue.hasSuffix("_total") }

    var help: String {
        switch self {
        case .buildInfo: "Always 1; the labels say which Wharf this is"
        case .fillsInFlight: "Blob downloads in progress"
        case .cacheEntries: "Entries in the cache index"
        case .diskUsed: "Bytes of cached blobs (including ones being published)"
        case .diskLimit: "Configured cache size bound (absent: unbounded)"
        case .diskHighWatermark: "Eviction starts past this many cached bytes (absent: unbounded)"
        case .diskLowWatermark: "Eviction frees space down to this many cached bytes (absent: unbounded)"
        case .evictions: "Blobs evicted (least recently used first)"
        case .evictedBytes: "Bytes evicted"
        case .evictionPasses: "Eviction runs that removed at least one blob"
        case .declinedFills: "Verified blobs streamed to clients but not kept, for lack of room"
        case .declinedBytes: "Bytes of blobs streamed to clients but not kept, for lack of room"
        case .upstreamUp: "1 while the upstream answers, 0 once unreachable (connections fail or a circuit opened); absent before its first request"
        case .upstreamCircuitOpen: "1 while a circuit breaker of the upstream is open (those requests fail fast)"
        case .upstreamRequests: "HTTP requests sent to the upstream (token fetches, probes and redirects included)"
        case .upstreamErrors: "Upstream requests that failed: transport errors and 5xx answers"
        case .upstreamBytes: "Blob body bytes downloaded from the upstream"
        case .rateLimitRemaining: "Pulls left of the upstream's rate limit (absent: no RateLimit headers seen)"
        case .rateLimitLimit: "The upstream's RateLimit-Limit (absent: none seen)"
        case .rateLimitReserve: "Pulls kept for uncached content (at or under it, cached tags are not re-fetched)"
        case .budgetRefusals: "Manifest GETs answered 429 for a spent pull budget, without asking"
        case .failovers: "Requests a fallback answered because its upstream was unreachable or refused"
        case .unconfirmedTags: "Tags a fallback resolved while the upstream was unreachable (served stale)"
        case .fallbackUp: "1 while a fallback of the upstream answers, 0 once unreachable; absent before its first request"
        case .processCPU: "User and system CPU time spent, in seconds"
        case .processResident: "Resident memory size in bytes"
        case .processVirtual: "Virtual memory size in bytes"
        case .processOpenFDs: "Open file descriptors"
        case .processMaxFDs: "The open file descriptor limit"
        case .processStartTime: "Start time of the process since the Unix epoch, in seconds"
        }
    }
}

/// Prometheus text format (0.0.4) for ``ScrapeFamily`` families. A family without samples is left out.
struct MetricsExposition {
    private(set) var text: [UInt8] = []

    /// One sample: its labels (in order) and value.
    typealias Sample = (labels: [(String, String)], value: Double)

    mutating func family(_ family: ScrapeFamily, _ samples: [Sample]) {
        guard !samples.isEmpty else { return }
        let name = family.rawValue
        self.append("# HELP \(name) \(family.help)\n# TYPE \(name) \(family.isCounter ? "counter" : "gauge")\n")
        for sample in samples {
            self.append(name)
            if !sample.labels.isEmpty {
                self.append("{")
                for (i, (label, value)) in sample.labels.enumerated() {
                    self.append(i == 0 ? "\(label)=\"" : ",\(label)=\"")
                    self.append(Self.escapedLabelValue(value))
                    self.append("\"")
                }
                self.append("}")
            }
            self.append(" ")
            self.append(Self.number(sample.value))
            self.append("\n")
        }
    }

    mutating func family(_ family: ScrapeFamily, _ value: Double?) {
        self.family(family, value.map { [([], $0)] } ?? [])
    }

    /// The families that come from the `/stats` document.
    mutating func snapshot(_ s: StatsSnapshot) {
        self.family(.buildInfo, [([("version", s.build.version), ("commit", s.build.commit)], 1)])
        self.family(.fillsInFlight, Double(s.fills.inFlight))
        let e = s.entries
        self.family(.cacheEntries, [([("kind", "blobs")], Double(e.blobs)), ([("kind", "manifests")], Double(e.manifests)), ([("kind", "tags")], Double(e.tags))])
        self.family(.diskUsed, Double(s.disk.usedBytes))
        self.family(.diskLimit, s.disk.limitBytes.map(Double.init))
        self.family(.diskHighWatermark, s.disk.highWatermarkBytes.map(Double.init))
        self.family(.diskLowWatermark, s.disk.lowWatermarkBytes.map(Double.init))
        let lru = [("reason", "lru")]
        self.family(.evictions, [(lru, Double(s.evictions.count))])
        self.family(.evictedBytes, [(lru, Double(s.evictions.bytes))])
        self.family(.evictionPasses, Double(s.evictions.passes))
        self.family(.declinedFills, Double(s.evictions.declinedFills))
        self.family(.declinedBytes, Double(s.evictions.declinedBytes))

        func each(_ value: (StatsSnapshot.Upstream) -> Double?) -> [Sample] {
            s.upstreams.compactMap { u in value(u).map { ([("upstream", u.name)], $0) } }
        }
        self.family(.upstreamUp, each { u in u.health.reachable.map { $0 ? 1 : 0 } })
        self.family(.upstreamCircuitOpen, each { u in u.health.circuit == .open ? 1 : 0 })
        self.family(.upstreamRequests, each { Double($0.requests) })
        self.family(.upstreamErrors, each { Double($0.errors) })
        self.family(.upstreamBytes, each { Double($0.bytes) })
        // The mirror's own budget; with pass-through clients only, the identity with the least left.
        let shown = { (u: StatsSnapshot.Upstream) -> RateLimitBudget? in
            u.rateLimitBudgets.first { $0.identity == UpstreamIdentity.mirror.cacheKey } ?? u.rateLimitBudgets.min { $0.remaining < $1.remaining }
        }
        self.family(.rateLimitRemaining, each { shown($0).map { Double($0.remaining) } })
        self.family(.rateLimitLimit, each { shown($0)?.limit.map(Double.init) })
        self.family(.rateLimitReserve, each { shown($0).map { Double($0.reserve) } })
        self.family(.budgetRefusals, each { Double($0.budgetRefusals) })
        let fallbacks = s.upstreams.flatMap { u in u.fallbacks.map { (u.name, $0) } }
        self.family(.failovers, fallbacks.flatMap { u, f -> [Sample] in
            [([("upstream", u), ("fallback", f.name), ("kind", "manifest")], Double(f.failovers.manifests)),
             ([("upstream", u), ("fallback", f.name), ("kind", "blob")], Double(f.failovers.blobs))]
        })
        self.family(.unconfirmedTags, fallbacks.map { u, f in ([("upstream", u), ("fallback", f.name)], Double(f.failovers.unconfirmedTags)) })
        self.family(.fallbackUp, fallbacks.compactMap { u, f in f.health.reachable.map { ([("upstream", u), ("fallback", f.name)], $0 ? 1 : 0) } })
    }

    /// `process_…`, as the Prometheus client libraries name them; left out where `/proc` is not readable.
    mutating func process(_ p: ProcessMetrics?) {
        guard let p else { return }
        self.family(.processCPU, p.cpuSeconds)
        self.family(.processResident, p.residentBytes.map(Double.init))
        self.family(.processVirtual, p.virtualBytes.map(Double.init))
        self.family(.processOpenFDs, p.openFileDescriptors.map(Double.init))
        self.family(.processMaxFDs, p.maxFileDescriptors.map(Double.init))
        self.family(.processStartTime, p.startTime)
    }

    private mutating func append(_ s: String) { self.text.append(contentsOf: s.utf8) }

    /// Integers without a fraction; other values as Swift spells doubles (Prometheus reads both).
    static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 9_007_199_254_740_992 { return String(Int64(value)) }
        return value.description
    }

    /// Label values escape `\`, `"` and newlines.
    static func escapedLabelValue(_ value: String) -> String {
        guard value.unicodeScalars.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return value }
        var out = ""
        for c in value.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}
