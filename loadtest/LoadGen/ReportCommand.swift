import ArgumentParser
import Foundation

/// One JSON line of `run`/`pull` (plus labels): string and numeric fields.
struct Record {
    var strings: [String: String] = [:]
    var numbers: [String: Double] = [:]

    init(_ object: [String: Any]) {
        for (key, value) in object {
            if let n = value as? NSNumber {  // (booleans become 1/0)
                numbers[key] = n.doubleValue
            } else if let s = value as? String {
                strings[key] = s
            }
        }
    }

    var system: String { strings["system"] ?? "?" }
    var scenario: String { strings["scenario"] ?? "?" }
    /// Stable case id (label `key`), falling back to the display name.
    var key: String { strings["key"] ?? strings["case"] ?? "" }
    var caseName: String { strings["case"] ?? strings["key"] ?? "" }
    var concurrency: Int { Int(numbers["concurrency"] ?? 0) }
}

/// The runs of one (scenario, case, concurrency, system), summarised by per-metric medians.
struct Cell {
    var runs: [Record] = []

    func median(_ field: String) -> Double? {
        let values = runs.compactMap { $0.numbers[field] }.sorted()
        guard !values.isEmpty else { return nil }
        let mid = values.count / 2
        return values.count % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2
    }

    func maximum(_ field: String) -> Double? { runs.compactMap { $0.numbers[field] }.max() }
    func total(_ field: String) -> Double { runs.compactMap { $0.numbers[field] }.reduce(0, +) }
}

/// All results, indexed for the tables.
struct ResultSet {
    var scenarios: [String] = []
    var cases: [String: [String]] = [:]  // scenario → case keys in order of appearance
    var caseNames: [String: String] = [:]  // "scenario/key" → display name
    var systems: [String] = []
    var cells: [String: Cell] = [:]

    static let systemOrder = ["nginx-static", "distribution", "origin", "distribution-proxy", "nginx-proxy-cache", "wharf"]
    static let scenarioOrder = ["warm-big", "warm-small", "cold", "herd", "pull", "memory"]

    static func cellKey(_ scenario: String, _ key: String, _ c: Int, _ system: String) -> String {
        "\(scenario)|\(key)|\(c)|\(system)"
    }

    init(records: [Record]) {
        for r in records where r.strings["system"] != nil && r.strings["scenario"] != nil {
            if !scenarios.contains(r.scenario) { scenarios.append(r.scenario) }
            if !(cases[r.scenario] ?? []).contains(r.key) { cases[r.scenario, default: []].append(r.key) }
            caseNames["\(r.scenario)/\(r.key)"] = r.caseName
            if !systems.contains(r.system) { systems.append(r.system) }
            cells[Self.cellKey(r.scenario, r.key, r.concurrency, r.system), default: Cell()].runs.append(r)
        }
        func rank(_ list: [String], _ order: [String]) -> [String] {
            list.enumerated().sorted { a, b in
                let ia = order.firstIndex(of: a.element) ?? order.count + a.offset
                let ib = order.firstIndex(of: b.element) ?? order.count + b.offset
                return ia < ib
            }.map(\.element)
        }
        scenarios = rank(scenarios, Self.scenarioOrder)
        systems = rank(systems, Self.systemOrder)
    }

    func cell(_ scenario: String, _ key: String, _ c: Int, _ system: String) -> Cell? {
        cells[Self.cellKey(scenario, key, c, system)]
    }

    func concurrencies(_ scenario: String, _ key: String) -> [Int] {
        Set(cells.values.compactMap { cell -> Int? in
            guard let r = cell.runs.first, r.scenario == scenario, r.key == key else { return nil }
            return r.concurrency
        }).sorted()
    }
}

func fmt(_ value: Double?, _ digits: Int = 1) -> String {
    guard let value, value.isFinite else { return "–" }
    if digits == 0 || abs(value) >= 1000 { return String(Int(value.rounded())) }
    return String(format: "%.\(digits)f", value)
}

func fmtSig(_ value: Double?) -> String {
    guard let value, value.isFinite else { return "–" }
    if abs(value) >= 100 { return String(Int(value.rounded())) }
    if abs(value) >= 10 { return String(format: "%.1f", value) }
    if abs(value) >= 1 { return String(format: "%.2f", value) }
    return String(format: "%.3f", value)
}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Turn JSON lines of run/pull into Markdown tables (median of runs, Wharf's ratio to each system) and an SVG chart.",
        discussion: """
            Rows are grouped by the labels scenario, key (or case), concurrency and system; each metric is the median \
            over the runs, errors are summed. The Markdown goes to stdout (or --markdown).
            """)

    @Argument(help: "Files of JSON lines.")
    var files: [String]

    @Option(help: "Write the Markdown here instead of stdout.")
    var markdown: String?

    @Option(help: "Write the throughput-vs-concurrency chart here.")
    var svg: String?

    @Option(help: "The system the ratios are computed for.")
    var subject: String = "wharf"

    @Flag(help: "Also print the Targets table (issues #5 and #16).")
    var targets = false

    func run() throws {
        var records: [Record] = []
        for file in files {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            for line in text.split(whereSeparator: \.isNewline) where line.first == "{" {
                if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] {
                    records.append(Record(object))
                }
            }
        }
        let results = ResultSet(records: records)
        var out = ""
        if targets {
            out += "## Targets (issues #5 and #16)\n\n" + TargetTable(results: results, subject: subject).markdown() + "\n"
            out += "## Results by scenario\n\n"
        }
        out += tables(results)
        if let markdown {
            try out.write(toFile: markdown, atomically: true, encoding: .utf8)
        } else {
            print(out, terminator: "")
        }
        if let svg {
            try Chart(results: results).svg().write(toFile: svg, atomically: true, encoding: .utf8)
        }
    }

    func tables(_ results: ResultSet) -> String {
        var out = ""
        for scenario in results.scenarios where scenario != "index" {  // (index: Targets and its own section)
            out += "### \(scenario)\n\n"
            for key in results.cases[scenario] ?? [] {
                let name = results.caseNames["\(scenario)/\(key)"] ?? key
                out += "**\(name)**\n\n"
                out += table(results, scenario: scenario, key: key)
                out += "\n"
            }
        }
        return out
    }

    /// Optional columns: shown when any row of the table has the field.
    struct Column {
        let title: String
        let field: String
        let digits: Int
    }

    func table(_ results: ResultSet, scenario: String, key: String) -> String {
        let levels = results.concurrencies(scenario, key)
        let allCells = levels.flatMap { c in results.systems.compactMap { results.cell(scenario, key, c, $0) } }
        func has(_ field: String) -> Bool { allCells.contains { $0.median(field) != nil } }
        let optional = [
            Column(title: "first byte p50 ms", field: "ttfb_p50_ms", digits: 2),
            Column(title: "wall s", field: "seconds", digits: 2),
            Column(title: "images/s", field: "images_per_s", digits: 1),
            Column(title: "image p50 ms", field: "image_p50_ms", digits: 1),
            Column(title: "upstream GETs", field: "upstream_gets", digits: 0),
        ].filter { column in
            if column.field == "seconds" { return ["cold", "herd", "pull", "memory"].contains(scenario) }
            return has(column.field)
        }
        var header = ["system", "c", "req/s", "MB/s", "p50 ms", "p99 ms", "p99.9 ms"]
        header += optional.map(\.title)
        header += ["errors", "CPU-s/GiB", "peak RSS MiB", "\(subject) ÷ this (MB/s)"]
        var out = "| " + header.joined(separator: " | ") + " |\n"
        out += "|" + header.map { _ in " --- |" }.joined() + "\n"
        for c in levels {
            let subjectCell = results.cell(scenario, key, c, subject)
            for system in results.systems {
                guard let cell = results.cell(scenario, key, c, system) else { continue }
                var row = [
                    system == subject ? "**\(system)**" : system, String(c),
                    fmt(cell.median("rps"), 1), fmt(cell.median("mbps"), 1),
                    fmtSig(cell.median("p50_ms")), fmtSig(cell.median("p99_ms")), fmtSig(cell.median("p999_ms")),
                ]
                for column in optional {
                    let value = column.field == "upstream_gets" ? cell.maximum(column.field) : cell.median(column.field)
                    row.append(column.digits == 0 ? fmt(value, 0) : fmtSig(value))
                }
                let rss = [cell.median("server_rss_peak_mib"), cell.median("server_rss_sampled_max_mib")].compactMap { $0 }.max()
                row += [fmt(cell.total("errors"), 0), fmtSig(cell.median("server_cpu_s_per_gib")), fmt(rss, 1)]
                if system == subject {
                    row.append("—")
                } else if let mine = subjectCell?.median("mbps"), let theirs = cell.median("mbps"), theirs > 0 {
                    row.append(String(format: "%.2f×", mine / theirs))
                } else {
                    row.append("–")
                }
                out += "| " + row.joined(separator: " | ") + " |\n"
            }
        }
        return out
    }
}

/// The targets of issues #5 and #16 (cold fills and the herd against nginx `proxy_cache`),
/// evaluated from the medians. The TLS targets are in RESULTS.md's TLS section.
struct TargetTable {
    let results: ResultSet
    let subject: String

    struct Row {
        var target: String
        var measured: String
        var met: Bool?
        /// A figure that explains a target (a floor, a breakdown) rather than one to meet.
        var context = false
    }

    func value(_ scenario: String, _ key: String, _ c: Int, _ system: String, _ field: String) -> Double? {
        results.cell(scenario, key, c, system)?.median(field)
    }

    /// Ratio subject ÷ system (or system-relative when `inverse`) at each concurrency; met when all pass.
    func ratioRow(
        _ target: String, scenario: String, key: String, levels: [Int], versus: String, field: String,
        atLeast: Double? = nil, atMost: Double? = nil
    ) -> Row {
        var parts: [String] = []
        var ok = true
        var any = false
        for c in levels {
            guard let mine = value(scenario, key, c, subject, field), let theirs = value(scenario, key, c, versus, field), theirs > 0 else {
                parts.append("c=\(c): –")
                continue
            }
            any = true
            let ratio = mine / theirs
            parts.append(String(format: "c=%d: %.2f×", c, ratio))
            if let atLeast, ratio < atLeast { ok = false }
            if let atMost, ratio > atMost { ok = false }
        }
        return Row(target: target, measured: parts.joined(separator: ", "), met: any ? ok : nil)
    }

    func rows() -> [Row] {
        var rows: [Row] = []
        let bigLevels = [1, 8, 64]
        for (key, name) in [("big", "128 MiB"), ("huge", "1 GiB")] {
            rows.append(ratioRow("warm big \(name): MB/s ≥ 0.9× nginx static", scenario: "warm-big", key: key, levels: bigLevels,
                                 versus: "nginx-static", field: "mbps", atLeast: 0.9))
            rows.append(ratioRow("warm big \(name): server CPU-s/GiB ≤ 1.3× nginx static's", scenario: "warm-big", key: key,
                                 levels: bigLevels, versus: "nginx-static", field: "server_cpu_s_per_gib", atMost: 1.3))
        }
        rows.append(ratioRow("warm small 16 KiB: req/s ≥ 0.8× nginx static", scenario: "warm-small", key: "small", levels: [64, 256],
                             versus: "nginx-static", field: "rps", atLeast: 0.8))
        rows.append(ratioRow("warm small 16 KiB: req/s ≥ 1.0× nginx proxy_cache", scenario: "warm-small", key: "small", levels: [64, 256],
                             versus: "nginx-proxy-cache", field: "rps", atLeast: 1.0))
        let manifestLevels = results.concurrencies("warm-small", "manifest-tag")
        rows.append(ratioRow("cached manifests by tag: req/s ≥ 0.8× nginx proxy_cache", scenario: "warm-small", key: "manifest-tag",
                             levels: manifestLevels, versus: "nginx-proxy-cache", field: "rps", atLeast: 0.8))
        rows.append(ratioRow("cached manifests by digest: req/s ≥ 0.8× nginx proxy_cache", scenario: "warm-small", key: "manifest-digest",
                             levels: results.concurrencies("warm-small", "manifest-digest"), versus: "nginx-proxy-cache", field: "rps", atLeast: 0.8))

        // Cold 128 MiB at c=1: total time, throughput, first byte.
        let coldTime = value("cold", "big", 1, subject, "mean_ms")
        let originTime = value("cold", "big", 1, "origin", "mean_ms")
        if let coldTime, let originTime, originTime > 0 {
            let r = coldTime / originTime
            rows.append(Row(target: "cold 128 MiB: total time ≤ 1.1× a direct GET from the origin",
                            measured: String(format: "%.0f ms vs %.0f ms: %.2f×", coldTime, originTime, r), met: r <= 1.1))
        } else {
            rows.append(Row(target: "cold 128 MiB: total time ≤ 1.1× a direct GET from the origin", measured: "–", met: nil))
        }
        rows.append(ratioRow("cold 128 MiB: throughput ≥ nginx proxy_cache cold", scenario: "cold", key: "big", levels: [1],
                             versus: "nginx-proxy-cache", field: "mbps", atLeast: 1.0))
        if let coldTime, let nginx = value("cold", "big", 1, "nginx-proxy-cache", "mean_ms"), nginx > 0 {
            let r = coldTime / nginx
            rows.append(Row(target: "cold 128 MiB (#16): total time ≤ 1.1× nginx proxy_cache cold",
                            measured: String(format: "%.0f ms vs %.0f ms: %.2f×", coldTime, nginx, r), met: r <= 1.1))
        }
        // The floor: what nginx proxy_cache's cold GET becomes when the SHA-256 that verifying needs runs beside it.
        if let coldTime, let floor = value("cold", "big-sha256", 1, "nginx-proxy-cache", "mean_ms"), floor > 0 {
            rows.append(Row(target: "cold 128 MiB floor: nginx proxy_cache with the SHA-256 of the same bytes beside it",
                            measured: String(format: "%.0f ms; Wharf %.0f ms: %.2f×", floor, coldTime, coldTime / floor),
                            met: nil, context: true))
        }
        if let mine = value("cold", "big", 1, subject, "ttfb_p50_ms"), let origin = value("cold", "big", 1, "origin", "ttfb_p50_ms") {
            rows.append(Row(target: "cold first byte ≤ origin first byte + 5 ms",
                            measured: String(format: "%.2f ms vs %.2f ms (%+.2f ms)", mine, origin, mine - origin), met: mine <= origin + 5))
        } else {
            rows.append(Row(target: "cold first byte ≤ origin first byte + 5 ms", measured: "–", met: nil))
        }

        // Herd.
        let herdLevels = results.concurrencies("herd", "herd")
        if let c = herdLevels.last, let cell = results.cell("herd", "herd", c, subject) {
            let gets = cell.runs.compactMap { $0.numbers["upstream_gets"] }
            let getsText = gets.map { String(Int($0)) }.joined(separator: ", ")
            rows.append(Row(target: "herd: exactly 1 upstream GET for \(c) concurrent cold GETs",
                            measured: "\(getsText) (per run)", met: gets.isEmpty ? nil : gets.allSatisfy { $0 == 1 }))
            if let herd = cell.median("seconds"), let one = coldTime {
                let r = herd * 1000 / one
                rows.append(Row(target: "herd: all \(c) finish within 1.5× one cold GET",
                                measured: String(format: "%.0f ms vs %.0f ms: %.2f×", herd * 1000, one, r), met: r <= 1.5))
            }
            let nginxHerd = results.cell("herd", "herd", c, "nginx-proxy-cache")?.median("seconds").flatMap { $0 > 0 ? $0 : nil }
            if let herd = cell.median("seconds"), let nginx = nginxHerd {
                let r = herd / nginx
                rows.append(Row(target: "herd (#16): wall time ≤ 0.8× nginx proxy_cache's",
                                measured: String(format: "%.0f ms vs %.0f ms: %.2f×", herd * 1000, nginx * 1000, r), met: r <= 0.8))
            }
            // The floor: the same GETs of a blob already cached, so with no fill to wait for or pay for.
            let floors = ["nginx-static", subject].compactMap { system in
                results.cell("herd", "herd-floor", c, system)?.median("seconds").map { (system, $0) }
            }
            if let nginx = nginxHerd, let fastest = floors.map(\.1).min() {
                let parts = floors.map { "\($0.0) " + String(format: "%.0f ms", $0.1 * 1000) }.joined(separator: ", ")
                rows.append(Row(target: "herd floor: the same \(c) GETs of the blob already cached (no fill)",
                                measured: parts + String(format: "; the faster is %.2f× nginx proxy_cache's cold herd", fastest / nginx),
                                met: nil, context: true))
            }
            if let herd = cell.median("seconds"), let cached = results.cell("herd", "herd-floor", c, subject)?.median("seconds"), cached > 0 {
                rows.append(Row(target: "herd: Wharf cold ÷ Wharf from cache (what the fill adds)",
                                measured: String(format: "%.0f ms vs %.0f ms: %.2f×", herd * 1000, cached * 1000, herd / cached),
                                met: nil, context: true))
            }
        } else {
            rows.append(Row(target: "herd: exactly 1 upstream GET", measured: "–", met: nil))
        }

        // Memory.
        for (key, limit, text) in [("warm-256", 80.0, "peak RSS ≤ 80 MiB serving 256 concurrent 1 GiB downloads"),
                                   ("cold-64", 150.0, "peak RSS ≤ 150 MiB during 64 concurrent cold fills")] {
            let levels = results.concurrencies("memory", key)
            if let c = levels.last, let cell = results.cell("memory", key, c, subject) {
                let peak = [cell.maximum("server_rss_peak_mib"), cell.maximum("server_rss_sampled_max_mib")].compactMap { $0 }.max()
                rows.append(Row(target: "memory: \(text)", measured: peak.map { String(format: "%.1f MiB", $0) } ?? "–",
                                met: peak.map { $0 <= limit }))
            } else {
                rows.append(Row(target: "memory: \(text)", measured: "–", met: nil))
            }
        }

        // Index (from wharf-index-bench, recorded as scenario "index").
        if let cell = results.cell("index", "lookup", 1, subject), let p99 = cell.median("p99_us") {
            let entries = cell.median("entries").map { String(Int($0)) } ?? "?"
            rows.append(Row(target: "index lookup p99 ≤ 20 µs at 1M blobs",
                            measured: String(format: "p99 %.2f µs (%@ entries)", p99, entries), met: p99 <= 20))
        } else {
            rows.append(Row(target: "index lookup p99 ≤ 20 µs at 1M blobs", measured: "–", met: nil))
        }
        return rows
    }

    func markdown() -> String {
        var out = "| target | measured (\(subject), medians) | met |\n| --- | --- | --- |\n"
        for row in rows() {
            let met = row.context ? "(context)" : row.met.map { $0 ? "met" : "**not met**" } ?? "not measured"
            out += "| \(row.target) | \(row.measured) | \(met) |\n"
        }
        return out
    }
}

/// Throughput vs concurrency, one panel per (scenario, case) with more than one concurrency level.
struct Chart {
    let results: ResultSet

    static let colors = [
        "nginx-static": "#2ca02c", "distribution": "#7f7f7f", "origin": "#8c564b", "distribution-proxy": "#9467bd",
        "nginx-proxy-cache": "#1f77b4", "wharf": "#d62728",
    ]

    func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    func svg() -> String {
        var panels: [(scenario: String, key: String, levels: [Int])] = []
        for scenario in results.scenarios {
            for key in results.cases[scenario] ?? [] {
                let levels = results.concurrencies(scenario, key)
                if levels.count > 1 { panels.append((scenario, key, levels)) }
            }
        }
        let columns = 2
        let pw = 460.0, ph = 300.0, margin = 20.0
        let rows = max(1, (panels.count + columns - 1) / columns)
        let legendHeight = 40.0
        let width = Double(columns) * pw + margin * 2
        let height = Double(rows) * ph + margin * 2 + legendHeight
        var s = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="11">
            <rect width="100%" height="100%" fill="white"/>

            """
        // Legend.
        var lx = margin
        let charted = results.systems.filter { system in
            panels.contains { panel in panel.levels.contains { results.cell(panel.scenario, panel.key, $0, system) != nil } }
        }
        for system in charted {
            let color = Self.colors[system] ?? "#000"
            s += "<rect x=\"\(lx)\" y=\"\(margin)\" width=\"14\" height=\"4\" fill=\"\(color)\"/>"
            s += "<text x=\"\(lx + 18)\" y=\"\(margin + 5)\">\(escape(system))</text>\n"
            lx += 30 + Double(system.count) * 7
        }
        for (index, panel) in panels.enumerated() {
            let ox = margin + Double(index % columns) * pw
            let oy = margin + legendHeight + Double(index / columns) * ph
            let left = ox + 60, right = ox + pw - 20, top = oy + 25, bottom = oy + ph - 40
            let bigBodies = panel.scenario == "warm-big" || panel.scenario == "memory" || panel.scenario == "pull"
            let field = bigBodies ? "mbps" : "rps"
            let unit = bigBodies ? "MB/s" : "req/s"
            var maxY = 0.0
            for c in panel.levels {
                for system in results.systems {
                    if let v = results.cell(panel.scenario, panel.key, c, system)?.median(field) { maxY = max(maxY, v) }
                }
            }
            maxY = niceCeiling(maxY)
            let name = results.caseNames["\(panel.scenario)/\(panel.key)"] ?? panel.key
            s += "<text x=\"\(ox + pw / 2)\" y=\"\(oy + 12)\" text-anchor=\"middle\" font-weight=\"bold\">\(escape(panel.scenario)): \(escape(name)) — \(unit)</text>\n"
            s += "<line x1=\"\(left)\" y1=\"\(bottom)\" x2=\"\(right)\" y2=\"\(bottom)\" stroke=\"#333\"/>"
            s += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(bottom)\" stroke=\"#333\"/>\n"
            for tick in 0...4 {
                let v = maxY * Double(tick) / 4
                let y = bottom - (bottom - top) * Double(tick) / 4
                s += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(right)\" y2=\"\(y)\" stroke=\"#ddd\"/>"
                s += "<text x=\"\(left - 4)\" y=\"\(y + 4)\" text-anchor=\"end\">\(fmt(v, v < 10 ? 1 : 0))</text>\n"
            }
            func x(_ i: Int) -> Double {
                panel.levels.count == 1 ? (left + right) / 2 : left + 20 + (right - left - 40) * Double(i) / Double(panel.levels.count - 1)
            }
            for (i, c) in panel.levels.enumerated() {
                s += "<text x=\"\(x(i))\" y=\"\(bottom + 14)\" text-anchor=\"middle\">\(c)</text>\n"
            }
            s += "<text x=\"\((left + right) / 2)\" y=\"\(bottom + 30)\" text-anchor=\"middle\">concurrency (connections)</text>\n"
            for system in results.systems {
                let color = Self.colors[system] ?? "#000"
                var points: [String] = []
                for (i, c) in panel.levels.enumerated() {
                    guard let v = results.cell(panel.scenario, panel.key, c, system)?.median(field), maxY > 0 else { continue }
                    let y = bottom - (bottom - top) * v / maxY
                    points.append(String(format: "%.1f,%.1f", x(i), y))
                    s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%@\"/>", x(i), y, color)
                }
                if points.count > 1 {
                    let width = system == "wharf" ? 2.5 : 1.5
                    s += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"\(width)\" points=\"\(points.joined(separator: " "))\"/>\n"
                }
            }
        }
        s += "</svg>\n"
        return s
    }

    /// A ceiling that splits into 4 round ticks.
    func niceCeiling(_ v: Double) -> Double {
        guard v > 0 else { return 1 }
        let raw = v / 4
        let magnitude = pow(10, floor(log10(raw)))
        for step in [1.0, 2, 2.5, 5, 10] where step * magnitude >= raw { return 4 * step * magnitude }
        return 40 * magnitude
    }
}
