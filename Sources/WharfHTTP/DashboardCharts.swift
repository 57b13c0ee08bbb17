import Foundation
import WharfMirror
import WharfText

/// Text the dashboard pages share: escaping and human units (IEC sizes, rates, ages).
enum PageText {
    static func esc(_ t: String) -> String {
        var out = ""
        out.reserveCapacity(t.utf8.count)
        for c in t.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// IEC units, as everywhere Wharf shows sizes to people (``ByteCount``).
    static func bytes(_ n: Double) -> String { ByteCount.string(Int64(n.rounded())) }

    static func bytes(_ n: Int64) -> String { self.bytes(Double(n)) }
    static func bytes(_ n: Int) -> String { self.bytes(Double(n)) }

    static func percent(_ ratio: Double) -> String { String(format: "%.1f %%", ratio * 100) }

    /// `42 s`, `5 min`, `3 h 2 min`, `2 d 4 h`.
    static func age(_ seconds: Double) -> String {
        let s = max(0, Int(seconds))
        if s < 60 { return "\(s) s" }
        if s < 3600 { return "\(s / 60) min" }
        if s < 86400 { return "\(s / 3600) h \(s % 3600 / 60) min" }
        return "\(s / 86400) d \(s % 86400 / 3600) h"
    }

    static func value(_ v: Double, unit: String) -> String {
        switch unit {
        case "B/s": return self.bytes(v) + "/s"
        case "%": return String(format: "%.1f %%", v)
        case "ms": return String(format: v < 10 ? "%.2f ms" : "%.0f ms", v)
        case "req/s": return String(format: v < 10 ? "%.2f/s" : "%.0f/s", v)
        default: return String(format: v == v.rounded() ? "%.0f" : "%.1f", v)
        }
    }
}

/// Line charts of ``MetricsHistory`` series as inline SVG: drawn by the server, so they show without
/// JavaScript.
enum DashboardCharts {
    static let width = 340.0, height = 110.0, pad = 4.0

    /// One chart: title with the latest value, the line (gaps where an interval had nothing to
    /// measure), and the scale. `data-points` counts the measured points.
    static func chart(_ series: MetricsHistory.Series, span: Double) -> String {
        let measured = series.points.compactMap { p in p.value.map { (p.time, $0) } }
        let latest = measured.last.map { PageText.value($0.1, unit: series.unit) } ?? "–"
        let top = max(series.unit == "%" ? 100 : 0, (measured.map(\.1).max() ?? 0) * 1.1, 1e-9)
        let end = series.points.last?.time ?? 0, begin = end - span
        func x(_ t: Double) -> Double { pad + (width - 2 * pad) * max(0, min(1, (t - begin) / max(span, 1))) }
        func y(_ v: Double) -> Double { height - pad - (height - 2 * pad) * (v / top) }
        var path = "", dots = "", pen = false
        for (i, p) in series.points.enumerated() {
            guard let v = p.value else {
                pen = false
                continue
            }
            path += String(format: "%@%.1f,%.1f ", pen ? "L" : "M", x(p.time), y(v))
            // A point with no measured neighbour would be an invisible line: mark it with a dot.
            let next = i + 1 < series.points.count ? series.points[i + 1].value : nil
            if !pen, next == nil { dots += String(format: #"<circle class="dot" cx="%.1f" cy="%.1f" r="2.5"/>"#, x(p.time), y(v)) }
            pen = true
        }
        let line = path.isEmpty
            ? #"<text x="\#(width / 2)" y="\#(height / 2)" text-anchor="middle" class="empty">no data yet</text>"#
            : #"<path class="series" d="\#(path.trimmingCharacters(in: .whitespaces))"/>"# + dots
        let spanText = PageText.age(span)
        return """
            <figure class="chart" data-series="\(PageText.esc(series.name))" data-points="\(measured.count)">\
            <figcaption>\(PageText.esc(series.name)) <b>\(latest)</b> <small class="span">last \(spanText)</small></figcaption>\
            <svg viewBox="0 0 \(Int(width)) \(Int(height))" width="\(Int(width))" height="\(Int(height))" role="img" \
            aria-label="\(PageText.esc(series.name)), last \(spanText)">\
            <line class="axis" x1="\(pad)" y1="\(height - pad)" x2="\(width - pad)" y2="\(height - pad)"/>\(line)\
            <text x="\(width - pad)" y="12" text-anchor="end" class="scale">\(PageText.value(top, unit: series.unit))</text></svg></figure>
            """
    }

    /// Used space with the low and high watermarks and the pinned share, as a bar.
    static func diskBar(_ disk: StatsSnapshot.Disk, pinnedBytes: Int64) -> String {
        guard let limit = disk.limitBytes, limit > 0 else {
            return "<p>Disk: \(PageText.bytes(disk.usedBytes)) used, no size bound (<code>data.max-size</code>).</p>"
        }
        func pct(_ n: Int64) -> String { String(format: "%.2f", min(100, 100 * Double(n) / Double(limit))) }
        var marks = ""
        if let low = disk.lowWatermarkBytes { marks += #"<span class="mark low" style="left:\#(pct(low))%" title="low watermark \#(PageText.bytes(low))"></span>"# }
        if let high = disk.highWatermarkBytes { marks += #"<span class="mark high" style="left:\#(pct(high))%" title="high watermark \#(PageText.bytes(high))"></span>"# }
        return """
            <div class="disk"><div class="bar" role="img" aria-label="disk \(pct(disk.usedBytes)) % used">\
            <span class="used" style="width:\(pct(disk.usedBytes))%"></span><span class="pinned" style="width:\(pct(pinnedBytes))%"></span>\(marks)</div>\
            <p><span data-stat="disk.usedBytes">\(PageText.bytes(disk.usedBytes))</span> of \(PageText.bytes(limit)) used \
            (\(pct(disk.usedBytes)) %), \(PageText.bytes(pinnedBytes)) pinned; eviction from \
            \(disk.highWatermarkBytes.map(PageText.bytes) ?? "–") down to \(disk.lowWatermarkBytes.map(PageText.bytes) ?? "–").</p></div>
            """
    }
}
