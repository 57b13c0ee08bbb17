import Foundation
import WharfMirror

/// The human page at `/`: plain server-rendered HTML, no scripts.
enum Dashboard {
    static func render(_ s: StatsSnapshot) -> String {
        func esc(_ t: String) -> String {
            t.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
                .replacingOccurrences(of: "\"", with: "&quot;")
        }
        func bytes(_ n: Int) -> String { ByteCountFormatter.string(fromByteCount: Int64(n), countStyle: .binary) }
        func pct(_ r: Double) -> String { String(format: "%.1f%%", r * 100) }
        let repoRows = s.topRepositoriesByBytes.map { "<tr><td>\(esc($0.name))</td><td>\(bytes($0.bytes))</td><td>\($0.pulls)</td></tr>" }.joined()
        let repositories = s.repositoryNamesShown
            ? "<table><tr><th>Repository</th><th>Bytes served</th><th>Pulls</th></tr>\(repoRows)</table>"
            : #"<p>Repository names are shown to administrators only: <a href="/?signin">sign in</a>.</p>"#
        let upstreamRows = s.upstreams.map {
            "<tr><td>\(esc($0.name))</td><td>\(esc($0.url))</td><td>\($0.state)</td><td>\($0.requests)</td><td>\($0.errors)</td><td>\(bytes($0.bytes))</td><td>\(esc($0.rateLimitRemaining ?? "-"))</td></tr>"
        }.joined()
        return """
            <!doctype html><html><head><meta charset="utf-8"><title>Wharf</title>
            <style>body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:.3em .8em;text-align:left}</style>
            </head><body><h1>Wharf</h1>
            <table><tr><th>Hit ratio (requests)</th><td>\(pct(s.cache.hitRatioByRequests))</td></tr>
            <tr><th>Hit ratio (bytes)</th><td>\(pct(s.cache.hitRatioByBytes))</td></tr>
            <tr><th>Bytes saved</th><td>\(bytes(s.bytes.saved))</td></tr>
            <tr><th>Served from disk / from fills</th><td>\(bytes(s.bytes.servedFromDisk)) / \(bytes(s.bytes.servedFromFills))</td></tr>
            <tr><th>Fetched from upstream</th><td>\(bytes(s.bytes.fetchedFromUpstream))</td></tr>
            <tr><th>Disk used / limit</th><td>\(bytes(Int(s.disk.usedBytes))) / \(s.disk.limitBytes.map { bytes(Int($0)) } ?? "unbounded")</td></tr>
            <tr><th>Evictions</th><td>\(s.evictions.count) blobs, \(bytes(Int(s.evictions.bytes)))</td></tr>
            <tr><th>Cached entries</th><td>\(s.entries.blobs) blobs, \(s.entries.manifests) manifests, \(s.entries.tags) tags</td></tr>
            <tr><th>Fills in flight</th><td>\(s.fills.inFlight)</td></tr>
            <tr><th>Uptime</th><td>\(Int(s.uptimeSeconds)) s</td></tr>
            <tr><th>Version</th><td>\(esc(s.build.version)) (\(esc(s.build.commit)))</td></tr></table>
            <h2>Upstreams</h2><table><tr><th>Name</th><th>URL</th><th>State</th><th>Requests</th><th>Errors</th><th>Fetched</th><th>Rate limit left</th></tr>\(upstreamRows)</table>
            <h2>Top repositories</h2>\(repositories)
            <p><a href="/stats">/stats</a> · <a href="/metrics">/metrics</a></p></body></html>

            """
    }
}
