import Foundation
import OCIDistribution
import WharfMirror
import WharfText

/// What the dashboard shows about the running server beyond `/stats`: its effective configuration
/// (a summary without secrets, as `wharf config check` prints it).
public struct ServerAbout: Sendable {
    public var configuration: [String]

    public init(configuration: [String] = []) {
        self.configuration = configuration
    }
}

/// The human page at `/`: server-rendered HTML with inline SVG charts of the last hour. It reads
/// without JavaScript; a small script refreshes it in place every 10 s.
enum Dashboard {
    static func render(_ s: StatsSnapshot, history: MetricsHistory, interval: Duration, about: ServerAbout, pinnedBytes: Int64, now: UInt64) -> String {
        let esc = PageText.esc
        // The charts span what has been sampled, up to the hour the history keeps.
        let step = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
        let samples = history.samples
        let covered = (samples.last?.time ?? 0) - (samples.first?.time ?? 0)
        let charts = history.series.map { DashboardCharts.chart($0, span: max(covered, step)) }.joined()
        func stat(_ key: String, _ text: String) -> String { #"<td data-stat="\#(key)">\#(text)</td>"# }
        let upstreamRows = s.upstreams.map { u -> String in
            let since = u.stateSince.map { " for " + PageText.age(Double(now) - Double($0)) } ?? ""
            let error = u.lastError.map { e in
                "<br><small>last error\(u.lastErrorAt.map { " " + PageText.age(Double(now) - Double($0)) + " ago" } ?? ""): \(esc(String(e.prefix(300))))</small>"
            } ?? ""
            let budgetText = u.budgetText.map(esc) ?? "–"
            return """
                <tr><td>\(esc(u.name))</td><td>\(esc(u.url))</td><td class="state \(u.state)">\(u.state)\(since)\(error)</td>\
                <td>\(u.circuit)</td><td>\(u.requests)</td><td>\(u.errors)</td><td>\(budgetText)</td></tr>
                """ + u.fallbacks.map { f in
                    let served = "answered \(f.failovers.manifests) manifests, \(f.failovers.blobs) blobs"
                    return "<tr><td>↳ fallback \(esc(f.name))</td><td>\(esc(f.url))</td><td class=\"state \(f.state)\">\(f.state)</td><td>\(served)</td>"
                        + "<td>\(f.requests)</td><td>\(f.errors)</td><td>\(esc(f.rateLimitRemaining ?? "–"))</td></tr>"
                }.joined()
        }.joined()
        let repoRows = s.topRepositoriesByBytes.map {
            "<tr><td><a href=\"/ui/cache?q=\(esc(RequestRouter.percentEncode($0.name)))\">\(esc($0.name))</a></td><td>\(PageText.bytes($0.bytes))</td><td>\($0.pulls)</td></tr>"
        }.joined()
        let repositories = s.repositoryNamesShown
            ? "<table><tr><th>Repository</th><th>Bytes served</th><th>Pulls</th></tr>\(repoRows)</table><p><a href=\"/ui/cache\">Browse the cache</a></p>"
            : #"<p>Repository names and the cache browser are shown to administrators only: <a href="/?signin">sign in</a>.</p>"#
        // The configuration names files and hosts: shown to those who may see repository names.
        let configuration = about.configuration.isEmpty || !s.repositoryNamesShown ? "" : "<h2>Configuration</h2><pre>\(esc(about.configuration.joined(separator: "\n")))</pre>"
        return """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><title>Wharf</title>
            <link rel="icon" href="/favicon.ico"><meta name="viewport" content="width=device-width">
            <style>\(Self.style)</style></head><body>
            <header><h1>Wharf</h1><p>version <b data-stat="version">\(esc(s.version))</b> · up \(PageText.age(s.uptimeSeconds)) · \
            <span id="refreshed">as of \(Self.clock(now))</span></p></header>
            <section class="kpis"><table>
            <tr><th>Hit ratio (requests)</th>\(stat("cache.hitRatioByRequests", PageText.percent(s.cache.hitRatioByRequests)))\
            <th>Hit ratio (bytes)</th>\(stat("cache.hitRatioByBytes", PageText.percent(s.cache.hitRatioByBytes)))</tr>
            <tr><th>Blob hits / misses</th><td><span data-stat="cache.blobHits">\(s.cache.blobHits)</span> / <span data-stat="cache.blobMisses">\(s.cache.blobMisses)</span></td>\
            <th>Manifest hits / misses</th><td><span data-stat="cache.manifestHits">\(s.cache.manifestHits)</span> / <span data-stat="cache.manifestMisses">\(s.cache.manifestMisses)</span></td></tr>
            <tr><th>Served from disk</th>\(stat("bytes.servedFromDisk", PageText.bytes(s.bytes.servedFromDisk)))\
            <th>Fetched from upstream</th>\(stat("bytes.fetchedFromUpstream", PageText.bytes(s.bytes.fetchedFromUpstream)))</tr>
            <tr><th>Saved</th>\(stat("bytes.saved", PageText.bytes(s.bytes.saved)))<th>Fills in flight</th>\(stat("fills.inFlight", "\(s.fills.inFlight)"))</tr>
            <tr><th>Stale serves</th><td><span data-stat="cache.staleServes">\(s.cache.staleServes)</span> \
            (+\(s.cache.staleWhileRevalidateServes) while revalidating, \(s.cache.budgetStaleServes) for a rate-limit reserve)</td>\
            <th>Cached</th><td><span data-stat="entries.blobs">\(s.entries.blobs)</span> blobs, \(s.entries.manifests) manifests, \(s.entries.tags) tags</td></tr>
            <tr><th>Evictions</th><td>\(s.evictions.count) blobs, \(PageText.bytes(s.evictions.bytes))</td>\
            <th>Fills started / failed</th><td>\(s.fills.started) / \(s.fills.failed) (\(s.fills.digestMismatches) digest mismatches)</td></tr>
            </table></section>
            <h2>Disk</h2>\(DashboardCharts.diskBar(s.disk, pinnedBytes: pinnedBytes))
            <h2>Last hour</h2><section class="charts">\(charts)</section>
            <h2>Upstreams</h2><table><tr><th>Name</th><th>URL</th><th>State</th><th>Circuit</th><th>Requests</th><th>Errors</th><th>Pull budget</th></tr>\(upstreamRows)</table>
            <h2>Top repositories</h2>\(repositories)
            \(configuration)
            <footer><a href="/stats">/stats</a> · <a href="/metrics">/metrics</a> · <a href="/ui/cache">cache browser</a> · \
            wharf \(esc(s.version)) (commit \(esc(s.commit)))</footer>
            <script>\(Self.refreshScript)</script>
            </body></html>

            """
    }

    /// `HH:MM:SS UTC`.
    static func clock(_ wall: UInt64) -> String {
        let s = Int(wall % 86400)
        return String(format: "%02d:%02d:%02d UTC", s / 3600, s % 3600 / 60, s % 60)
    }

    /// The pages' policy: nothing from elsewhere, no framing, and only the one script Wharf wrote
    /// (``refreshScript``, by its hash), so text from a cache entry that slipped past escaping could
    /// still not run. Inline styles stay allowed (the charts position their marks with them).
    static let contentSecurityPolicy: String = {
        let hex = Array(Digest.sha256(of: Array(Self.refreshScript.utf8)).hex.utf8)
        let raw = stride(from: 0, to: hex.count, by: 2).compactMap { UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16) }
        let hash = Data(raw).base64EncodedString()
        return "default-src 'none'; script-src 'sha256-\(hash)'; style-src 'unsafe-inline'; img-src 'self' data:; "
            + "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    }()

    /// Fetches the page every 10 s and swaps the body in place (no reload flash, scroll kept).
    static let refreshScript = """
        setInterval(async()=>{try{const r=await fetch(location.href,{cache:"no-store"});if(!r.ok)return;\
        const d=new DOMParser().parseFromString(await r.text(),"text/html");document.body.replaceWith(d.body)}catch(e){}},10000);
        """

    static let style = """
        body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:76em;color:#1d2330;background:#fbfbfd;padding:0 1em}\
        h1{margin:.2em 0}h2{margin-top:1.4em;font-size:1.15em}header p{color:#555;margin:.2em 0}\
        table{border-collapse:collapse;margin-bottom:1em;background:#fff}td,th{border:1px solid #d8dbe3;padding:.3em .7em;text-align:left;vertical-align:top}\
        th{background:#f1f3f8;font-weight:600}.state.up{color:#0a7a35}.state.down{color:#b3261e;font-weight:600}\
        .charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(350px,1fr));gap:.8em}\
        figure.chart{margin:0;background:#fff;border:1px solid #d8dbe3;padding:.4em}figure.chart svg{width:100%;height:auto}figcaption{font-size:.9em}\
        path.series{fill:none;stroke:#2f6fde;stroke-width:2}circle.dot{fill:#2f6fde}line.axis{stroke:#bbb}text.scale,text.empty,.span{font-size:11px;fill:#777;color:#777}\
        .disk .bar{position:relative;height:22px;background:#e9ecf3;border:1px solid #c9cedb;max-width:50em}\
        .disk .used{position:absolute;left:0;top:0;bottom:0;background:#6b9cf0}.disk .pinned{position:absolute;left:0;top:0;bottom:0;background:#f0a64b;opacity:.9}\
        .disk .mark{position:absolute;top:-4px;bottom:-4px;width:2px}.mark.high{background:#b3261e}.mark.low{background:#0a7a35}\
        pre{background:#fff;border:1px solid #d8dbe3;padding:.6em;overflow:auto}footer{margin-top:2em;color:#555}\
        input{padding:.3em;min-width:20em}.pin{color:#b36b00;font-weight:600}
        """
}
