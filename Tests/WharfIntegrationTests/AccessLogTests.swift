import Foundation
import OCIDistribution
import Testing
import WharfTestSupport

/// The real `wharf serve` with `--log-format text` and `--log-format json`: every line of its stderr
/// parses (logfmt by a logfmt reader, JSON by JSONSerialization), whatever a client sends as its user
/// agent; the access log has the client, user agent, upstream, cache outcome, bytes, milliseconds,
/// status and `aborted` for transfers the client cut off; an upstream going down and up is logged
/// with its cause.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct AccessLogTests {
    /// A user agent no formatter should trust: quotes, backslashes, `key=value` look-alikes, a tab,
    /// UTF-8 and a byte that is not UTF-8.
    static let hostileAgent: [UInt8] = Array(#"evil "quoted" \back\slash x=1 level=error msg="forged""#.utf8) + [0x09]
        + Array("ünï".utf8) + [0xFF] + Array("end".utf8)
    static var hostileAgentText: String { String(decoding: Self.hostileAgent, as: UTF8.self) }

    @Test("--log-format text: logfmt lines a logfmt reader accepts; access-log fields; upstream down and up with their cause")
    func text() async throws {
        try await Self.run(format: "text") { lines, upstream, wharf, registry in
            // The upstream goes away: a request it must answer finds it down.
            let port = registry.port
            try await registry.stop()
            for _ in 0..<5 {
                _ = try await Self.get("/v2/team/app/manifests/v2", wharf.port)
                if try lines().contains(where: { $0["msg"] == "upstream down" }) { break }
            }
            let down = try #require(try lines().first { $0["msg"] == "upstream down" }, "no 'upstream down' line")
            #expect(down["level"] == "warning" && down["upstream"] == upstream)
            #expect((down["reason"] ?? "").count > 3, "no cause: \(down)")
            try await registry.start(port: port)
            var status = 0
            for _ in 0..<75 where status != 200 {  // a circuit the failures opened lets a trial through within 10 s
                status = try await Self.get("/v2/team/app/manifests/v2", wharf.port).status
                if status != 200 { try await Task.sleep(for: .milliseconds(200)) }
            }
            #expect(status == 200)
            await eventually(within: .seconds(10), "no 'upstream up' line") { ((try? lines()) ?? []).contains { $0["msg"] == "upstream up" } }
            let up = try #require(try lines().first { $0["msg"] == "upstream up" })
            #expect(up["level"] == "notice" && up["upstream"] == upstream && Double(up["down_ms"] ?? "") ?? 0 > 0, "\(up)")
        }
    }

    @Test("--log-format json: one JSON object per line, numbers and booleans typed, the same access-log fields")
    func json() async throws {
        try await Self.run(format: "json") { _, _, _, _ in }
    }

    /// Starts an upstream and `wharf serve --log-format FORMAT`, sends the workload, checks every line
    /// and the access log, then hands over to `more` (the parsed lines, the upstream's name, Wharf, the registry).
    static func run(
        format: String,
        more: (_ lines: () throws -> [[String: String]], _ upstream: String, _ wharf: WharfProcess, _ registry: RegistryProcess) async throws -> Void
    ) async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [20_000, 24 << 20], format: .oci)
        for tag in ["v1", "v2"] { try upstream.storage.add(image: image, repository: "team/app", tag: tag) }
        try await upstream.start()
        let sandbox = try TempDirectory.make("accesslog")
        let data = sandbox + "/data"  // wharf's log goes beside it, inside the sandbox
        var wharf: WharfProcess?
        do {
            let w = try await WharfProcess.start(upstream: upstream.registry.url, dataDirectory: data, extraArguments: ["--log-format", format])
            wharf = w
            let lines = { try Self.lines(w.child.output(), format: format) }
            let stats = try JSONSerialization.jsonObject(with: Data(try await Self.get("/stats", w.port).body)) as? [String: Any]
            let name = try #require((stats?["upstreams"] as? [[String: Any]])?.first?["name"] as? String)
            let small = image.layers[0], big = image.layers[1]
            // Indexed and no fill running, as /stats says (status requests are not part of the workload below).
            let cached = { (blobs: Int) async throws -> Bool in
                let s = try JSONSerialization.jsonObject(with: Data(try await Self.get("/stats", w.port).body)) as? [String: Any]
                return (s?["entries"] as? [String: Any])?["blobs"] as? Int == blobs && (s?["fills"] as? [String: Any])?["inFlight"] as? Int == 0
            }

            // The hostile user agent on the async side (a miss) and on the event loop (a hit).
            for _ in 0..<2 {
                let request = Array("GET /v2/team/app/manifests/v1 HTTP/1.1\r\nHost: w\r\nUser-Agent: ".utf8) + Self.hostileAgent
                    + Array("\r\nConnection: close\r\n\r\n".utf8)
                let r = try await RawHTTP.onOwnThread { try RawHTTP.blockingRequest(request, port: w.port, maxBytes: 1 << 20) }
                #expect(r.status == 200)
            }
            #expect(try await Self.get("/v2/team/app/blobs/\(small.digest)", w.port, agent: "skopeo/1.9").status == 200)  // miss
            try await eventually("the small layer was not cached") { try await cached(1) }
            #expect(try await Self.get("/v2/team/app/blobs/\(small.digest)", w.port, agent: "skopeo/1.9").status == 200)  // hit
            #expect(try await Self.get("/v2/team/app/blobs/sha256:\(String(repeating: "0", count: 64))", w.port).status == 404)
            #expect(try await Self.get("/v2/", w.port, agent: String(repeating: "a", count: 10_000)).status == 200)
            // A big blob the client cuts off after 64 KiB: as a miss (following its fill), then as a hit (sendfile).
            let cut = "GET /v2/team/app/blobs/\(big.digest) HTTP/1.1\r\nHost: w\r\nUser-Agent: impatient\r\n\r\n"
            #expect(try await RawHTTP.request(cut, port: w.port, maxBytes: 64 << 10).status == 200)
            try await eventually(within: .seconds(30), "the big layer was not cached") { try await cached(2) }
            #expect(try await RawHTTP.request(cut, port: w.port, maxBytes: 64 << 10).status == 200)

            let sent = 8  // 2 manifests, 2 small blobs, a 404, /v2/, 2 cut big blobs
            let isWorkload = { (line: [String: String]) in line["msg"] == "request" && line["kind"] != "status" }  // not probes, not /stats
            await eventually(within: .seconds(10), "not every request was logged") { ((try? lines()) ?? []).filter(isWorkload).count >= sent }
            let all = try lines()
            #expect(all.count > sent, "start-up lines too")
            for line in all {
                #expect(line["time"]?.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil, "\(line)")
                #expect(line["level"] != nil && line["msg"] != nil, "\(line)")
                #expect(line["level"] != "error" || line["msg"] != "forged", "a field was forged: \(line)")
            }
            let requests = all.filter(isWorkload)
            #expect(requests.count == sent, "\(requests.map { $0["path"] ?? "" })")
            for r in requests {
                for key in ["id", "client", "method", "path", "status", "bytes", "duration_ms", "cache", "kind", "upstream", "aborted", "user_agent"] {
                    #expect(r[key] != nil, "\(key) missing: \(r)")
                }
                #expect(r["client"] == "127.0.0.1")
                #expect((Double(r["duration_ms"] ?? "") ?? -1) >= 0, "\(r)")
                #expect(r["us"] == nil && r["duration"] == nil)
            }
            let manifests = requests.filter { $0["path"] == "/v2/team/app/manifests/v1" }
            #expect(manifests.map { $0["cache"] } == ["miss", "hit"], "\(manifests)")
            for m in manifests {
                #expect(m["user_agent"] == Self.hostileAgentText, "\(m["user_agent"] ?? "none")")
                #expect(m["upstream"] == name && m["status"] == "200" && m["kind"] == "manifest" && m["aborted"] == "false")
                #expect(Int(m["bytes"] ?? "") == image.manifest.size)
            }
            let smalls = requests.filter { $0["path"] == "/v2/team/app/blobs/\(small.digest)" }
            #expect(smalls.map { $0["cache"] } == ["miss", "hit"] && smalls.allSatisfy { $0["bytes"] == "\(small.size)" && $0["user_agent"] == "skopeo/1.9" })
            let unknown = try #require(requests.first { $0["status"] == "404" })
            #expect(unknown["cache"] == "BLOB_UNKNOWN" && unknown["user_agent"] == "-")
            let base = try #require(requests.first { $0["path"] == "/v2/" })
            #expect(base["upstream"] == "-" && base["kind"] == "base")
            #expect(base["user_agent"] == String(repeating: "a", count: 256) + "…", "the user agent is bounded")
            let cuts = requests.filter { $0["path"] == "/v2/team/app/blobs/\(big.digest)" }
            #expect(cuts.map { $0["cache"] } == ["miss", "hit"], "\(cuts)")
            #expect(cuts.allSatisfy { $0["aborted"] == "true" && $0["status"] == "200" && $0["user_agent"] == "impatient" }, "\(cuts)")
            #expect(requests.filter { $0["aborted"] == "true" }.count == 2)
            // Other lines use milliseconds too.
            let filled = all.filter { $0["msg"] == "blob cached" }
            #expect(!filled.isEmpty && filled.allSatisfy { Double($0["duration_ms"] ?? "") != nil && $0["duration"] == nil }, "\(filled)")
            if format == "json" {
                // Typed: numbers and booleans, not strings.
                for raw in w.child.output().split(separator: "\n") where raw.contains(#""msg":"request""#) {
                    let object = try #require(try JSONSerialization.jsonObject(with: Data(raw.utf8)) as? [String: Any])
                    #expect(object["status"] is Int && object["bytes"] is Int && object["id"] is Int, "\(raw)")
                    #expect(object["aborted"] is Bool && (object["duration_ms"] is Double || object["duration_ms"] is Int), "\(raw)")
                }
            }
            try await more(lines, name, w, upstream.registry)
        } catch {
            Issue.record(error)
        }
        if let wharf {
            #expect(await wharf.stop() == 0)
            // Lines written while shutting down parse too.
            #expect(throws: Never.self) { _ = try Self.lines(wharf.child.output(), format: format) }
        }
        await upstream.stop()
        try? FileManager.default.removeItem(atPath: sandbox)
    }

    static func get(_ path: String, _ port: Int, agent: String? = nil) async throws -> RawHTTP.Response {
        let ua = agent.map { "User-Agent: \($0)\r\n" } ?? ""
        return try await RawHTTP.request("GET \(path) HTTP/1.1\r\nHost: w\r\n\(ua)Connection: close\r\n\r\n", port: port)
    }

    struct NotAnObject: Error {
        let line: String
    }

    /// Every line of `output` as fields (JSON values as their text: `200`, `true`, `18.812`); throws
    /// on a line that does not parse.
    static func lines(_ output: String, format: String) throws -> [[String: String]] {
        try output.split(separator: "\n").map { raw in
            let line = String(raw)
            if format == "text" {
                return Dictionary(try LogfmtParser.parse(line), uniquingKeysWith: { first, _ in first })
            }
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw NotAnObject(line: line)
            }
            return object.mapValues { value in
                switch value {
                case let s as String: s
                case let b as Bool: b ? "true" : "false"
                default: "\(value)"
                }
            }
        }
    }
}
