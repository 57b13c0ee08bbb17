import Foundation
import Synchronization
import Testing
import WharfTestSupport

/// The real `wharf` executable in front of an upstream that breaks its answers at random
/// (``UpstreamReplies``): lying lengths and digests, bad framing, garbage heads, errors, redirects,
/// stalls. Every client answer is a well-formed head with a status Wharf means to send and comes
/// within a bound; a body Wharf marks complete is the right content; nothing wrong is cached (once the
/// upstream is honest again, everything asked for arrives intact, and every file in the cache hashes
/// to its name); the process keeps its descriptors and memory. The seed is fixed, so a failure
/// repeats; `WHARF_FUZZ_SEED` and `WHARF_FUZZ_COUNT` explore further.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct UpstreamFuzzTests {
    /// The upstream's random choices and whether it lies, shared by its connections.
    final class Script: Sendable {
        let state: Mutex<(random: SeededRandom, honest: Bool)>
        init(seed: UInt64) { self.state = Mutex((SeededRandom(seed: seed), false)) }
    }

    enum Ask: Sendable {
        case blob(Int, head: Bool)
        case tag(Int)
        case manifest(Int)
    }

    /// What a client got: the body when Wharf said it was complete, nil when it cut the body off.
    struct Got: Sendable {
        let status: Int
        let headers: [(String, String)]
        let body: [UInt8]?
        func header(_ name: String) -> String? { self.headers.first { $0.0.lowercased() == name }?.1 }
    }

    static func request(_ ask: Ask, _ replies: UpstreamReplies) -> String {
        let base = "/v2/\(UpstreamReplies.repository)"
        let (method, path) = switch ask {
        case .blob(let i, let head): (head ? "HEAD" : "GET", "\(base)/blobs/\(replies.blobs[i].digest)")
        case .tag(let i): ("GET", "\(base)/manifests/\(replies.manifests[i].tag)")
        case .manifest(let i): ("GET", "\(base)/manifests/\(replies.manifests[i].digest)")
        }
        return "\(method) \(path) HTTP/1.1\r\nHost: w\r\nAccept: \(UpstreamReplies.manifestType)\r\nConnection: close\r\n\r\n"
    }

    /// Sends `ask` and checks the answer's form; a string says what is wrong with it.
    static func send(_ ask: Ask, _ replies: UpstreamReplies, port: Int) -> Result<Got, Problem> {
        let isHead = if case .blob(_, true) = ask { true } else { false }
        let started = ContinuousClock.now
        guard let response = try? RawHTTP.blockingRequest(Array(Self.request(ask, replies).utf8), port: port, maxBytes: 8 << 20, untilClose: true) else {
            return .failure(Problem("could not connect"))
        }
        if ContinuousClock.now - started > .seconds(15) { return .failure(Problem("answered after \(ContinuousClock.now - started)")) }
        let raw = response.raw
        // The head alone is checked as text (a binary body could run into it as UTF-8).
        guard let headEnd = raw.firstRange(of: [13, 10, 13, 10]) else {
            return .failure(Problem("no end of head in \(raw.count) bytes: \(String(decoding: raw.prefix(300), as: UTF8.self).debugDescription)"))
        }
        guard case .head(let status, let headers) = MutationFuzzTests.parse(Array(raw[..<headEnd.upperBound])) else {
            return .failure(Problem("\(MutationFuzzTests.parse(Array(raw[..<headEnd.upperBound])))"))
        }
        guard MutationFuzzTests.expectedStatuses.contains(status) else { return .failure(Problem("status \(status)")) }
        let lengths = headers.filter { $0.0.lowercased() == "content-length" }.map(\.1)
        let rest = raw[headEnd.upperBound...]
        if isHead { return .success(Got(status: status, headers: headers, body: [])) }
        if let declared = lengths.first.flatMap({ Int($0) }), lengths.count == 1 {
            if rest.count > declared { return .failure(Problem("\(rest.count) body bytes after Content-Length \(declared)")) }
            return .success(Got(status: status, headers: headers, body: rest.count == declared ? Array(rest) : nil))
        }
        if headers.contains(where: { $0.0.lowercased() == "transfer-encoding" && $0.1.lowercased() == "chunked" }) {
            return .success(Got(status: status, headers: headers, body: Self.dechunked(Array(rest))))
        }
        return .failure(Problem("no usable framing: Content-Length \(lengths)"))
    }

    /// A chunked body decoded, or nil when it ends before its last chunk.
    static func dechunked(_ bytes: [UInt8]) -> [UInt8]? {
        var out: [UInt8] = [], i = 0
        while let line = bytes[i...].firstRange(of: [13, 10]) {
            guard let size = Int(String(decoding: bytes[i..<line.lowerBound], as: UTF8.self), radix: 16) else { return nil }
            if size == 0 { return out }
            let start = line.upperBound
            guard start + size + 2 <= bytes.count else { return nil }
            out += bytes[start..<(start + size)]
            i = start + size + 2
        }
        return nil
    }

    /// Whether `got` is right for `ask` when Wharf says its body is complete.
    static func check(_ got: Got, _ ask: Ask, _ replies: UpstreamReplies) -> Problem? {
        guard got.status == 200, let body = got.body else { return nil }
        let digest = FileDigest.sha256(body)
        switch ask {
        case .blob(let i, false) where digest != replies.blobs[i].digest: return Problem("blob \(i): a complete 200 with other bytes")
        case .manifest(let i) where digest != replies.manifests[i].digest: return Problem("manifest \(i): a complete 200 with other bytes")
        case .tag(let i) where got.header("docker-content-digest") != digest: return Problem("tag \(i): Docker-Content-Digest \(got.header("docker-content-digest") ?? "-") for \(digest)")
        default: return nil
        }
    }

    /// The descriptors `pid` holds on anything but files under `folder`.
    static func descriptors(_ pid: String, outside folder: String) -> Int { ProcFS.descriptorTargets(pid).filter { !$0.hasPrefix(folder) }.count }

    struct Problem: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    @Test("an upstream that breaks its answers at random: clients get well-formed answers, never wrong content; nothing wrong is cached")
    func brokenUpstream() async throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["WHARF_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x5550_5354
        let count = environment["WHARF_FUZZ_COUNT"].flatMap { Int($0) } ?? 1600
        // Blobs from 600 on and manifest 60 are never asked while the upstream lies.
        let replies = UpstreamReplies(blobCount: 610, manifestCount: 61, seed: seed)
        let script = Script(seed: seed &+ 1)
        let upstream = RawReplyServer { request in
            script.state.withLock { replies.reply(request, honestOnly: $0.honest, &$0.random) }
        }
        try await upstream.start()
        let sandbox = try TempDirectory.make("upstream-fuzz")
        try """
            upstreams:
              - name: fuzz
                url: http://127.0.0.1:\(upstream.port)
                connect-timeout: 1s
                first-byte-timeout: 1s
                idle-timeout: 1s
            limits:
              upstream-lookups-per-client: 1000000
              upstream-lookup-burst: 1000000
            """.write(toFile: sandbox + "/wharf.yaml", atomically: true, encoding: .utf8)
        let wharf = try await WharfProcess.start(
            upstream: "http://127.0.0.1:\(upstream.port)", dataDirectory: sandbox + "/data", extraArguments: ["--config", sandbox + "/wharf.yaml"])
        do {
            let port = wharf.port, pid = "\(wharf.child.pid)"
            let descriptorsBefore = Self.descriptors(pid, outside: sandbox), memoryBefore = ProcFS.residentKiB(pid) ?? -1
            // Eight clients, each with its own stream of asks, on threads of their own.
            let workers = 8
            let results = try await withThrowingTaskGroup(of: [(Ask, Result<Got, Problem>)].self) { group in
                for w in 0..<workers {
                    group.addTask {
                        try await RawHTTP.onOwnThread {
                            var r = SeededRandom(seed: seed &+ UInt64(w + 2) &* 0x1_0000_0001)
                            return (0..<(count / workers)).map { _ in
                                let ask: Ask = switch r.below(20) {
                                case 0..<3: .tag(r.below(60))
                                case 3: .manifest(r.below(60))
                                case 4, 5: .blob(r.below(600), head: true)
                                default: .blob(r.below(600), head: false)
                                }
                                return (ask, Self.send(ask, replies, port: port))
                            }
                        }
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            var statuses: [String: Int] = [:], problems: [String] = []
            for (ask, result) in results {
                switch result {
                case .failure(let problem): problems.append("\(ask): \(problem)")
                case .success(let got):
                    statuses["\(got.status)\(got.body == nil ? " cut" : "")", default: 0] += 1
                    if let problem = Self.check(got, ask, replies) { problems.append(problem.description) }
                }
            }
            let problemCount = problems.count
            #expect(problemCount == 0, "seed \(seed): \(problems.count) problems: \(problems.prefix(10)); statuses \(statuses)")
            // Both sides exercised: some pulls got through the lies, many did not.
            #expect(statuses["200", default: 0] > count / 40 && results.count - statuses["200", default: 0] > count / 10, "\(statuses)")
            // Whatever the token endpoint said, nothing it sent became a header of another request.
            let injected = upstream.requests.filter { $0.header("x-injected") != nil || $0.headers.contains { $0.value.contains("\r") || $0.value.contains("\0") } }
            #expect(injected.isEmpty, "\(injected.prefix(3))")
            let tokenAsks = upstream.requests.filter { $0.path == "/token" }.count
            #expect(tokenAsks > 0, "the token endpoint was never used")
            #expect(wharf.child.isRunning, "wharf exited: \(wharf.child.output().suffix(2000))")

            // The upstream turns honest: whatever was asked for arrives intact (nothing wrong was kept),
            // once the circuit breaker's cooldown lets requests through again.
            script.state.withLock { $0.honest = true }
            await eventually(within: .seconds(30), "the upstream is not used again") {
                // Blobs and manifests have circuits of their own: both must be closed again.
                guard case .success(let blob) = Self.send(.blob(600, head: false), replies, port: port), blob.status == 200, blob.body != nil,
                    case .success(let tag) = Self.send(.tag(60), replies, port: port)
                else { return false }
                return tag.status == 200 && tag.body != nil
            }
            var again: [String] = []
            var asked: [String: Ask] = [:]
            for (ask, _) in results { if case .blob(let i, false) = ask { asked["b\(i)"] = ask } else if case .manifest(let i) = ask { asked["m\(i)"] = ask } else if case .tag(let i) = ask { asked["t\(i)"] = ask } }
            for ask in asked.values {
                let isBlob = if case .blob = ask { true } else { false }
                var answer = Self.send(ask, replies, port: port)
                // A 429 the lying upstream sent holds the repository's manifests for its Retry-After: a
                // client waits that long and asks again, as Docker does.
                if case .success(let got) = answer, got.status == 429, let wait = got.header("retry-after").flatMap({ Int($0) }), wait <= 5 {
                    try await Task.sleep(for: .seconds(wait))
                    answer = Self.send(ask, replies, port: port)
                }
                switch answer {
                case .failure(let problem): again.append("\(ask): \(problem)")
                // A manifest the lying upstream called missing is remembered as missing for 30 s.
                case .success(let got) where got.status == 404 && !isBlob: continue
                case .success(let got) where got.status != 200 || got.body == nil: again.append("\(ask): \(got.status), complete \(got.body != nil)")
                case .success(let got): if let problem = Self.check(got, ask, replies) { again.append(problem.description) }
                }
            }
            let failedAgain = again.count
            #expect(failedAgain == 0, "\(failedAgain) of \(asked.count) failed with an honest upstream: \(again.prefix(10))\n\(wharf.child.output().suffix(3000))")
            let cached = CacheFiles.blobs(in: sandbox + "/data").keys
            let files = cached.count
            let damaged = cached.filter { (try? FileDigest.sha256(path: "\(sandbox)/data/blobs/sha256/\($0.prefix(2))/\($0)")) != "sha256:" + $0 }
            #expect(files > 0 && damaged.isEmpty, "\(damaged.count) of \(files) cached files do not hash to their name")
            await eventually(within: .seconds(20), "temporary fill files left") { CacheFiles.tempFiles(in: sandbox + "/data").isEmpty }
            // Sockets and pipes come back down (files in the cache may stay open: small blobs' descriptor cache).
            await eventually(within: .seconds(20), "descriptors: \(descriptorsBefore) before, \(Self.descriptors(pid, outside: sandbox)) now") {
                Self.descriptors(pid, outside: sandbox) <= descriptorsBefore + 8
            }
            let memoryAfter = ProcFS.residentKiB(pid) ?? -1
            #expect(memoryAfter < memoryBefore + 96 << 10, "RSS \(memoryBefore) → \(memoryAfter) KiB")
            print("upstream fuzz: \(results.count) asks, statuses \(statuses), upstream requests \(upstream.requestCount) (tokens \(tokenAsks)), \(files) files cached")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
        try? FileManager.default.removeItem(atPath: sandbox)
    }

    /// N of a token request for `repository:badN/app:pull`.
    static func badIndex(_ target: String) -> Int? {
        target.components(separatedBy: "bad").dropFirst().first.flatMap { Int($0.prefix { $0.isNumber }) }
    }

    @Test("token endpoint answers with no usable token, or one holding CR/LF/NUL: a clean error, and no header is ever split")
    func badTokens() async throws {
        let bad = UpstreamReplies.badTokens
        // Repository badN's scope gets bad token answer N; content needs a token, which never works.
        let upstream = RawReplyServer { request in
            let json = "Content-Type: application/json\r\n"
            if request.path == "/token" {
                let body = Array(bad[(Self.badIndex(request.target) ?? 0) % bad.count].utf8)
                return .init(Array("HTTP/1.1 200 OK\r\n\(json)Content-Length: \(body.count)\r\n\r\n".utf8) + body)
            }
            let challenge = #"WWW-Authenticate: Bearer realm="http://\#(request.header("host") ?? "")/token",service="fuzz""#
            return .init(Array("HTTP/1.1 401 Unauthorized\r\n\(challenge)\r\n\(json)Content-Length: 2\r\n\r\n{}".utf8))
        }
        try await upstream.start()
        let sandbox = try TempDirectory.make("bad-tokens")
        let wharf = try await WharfProcess.start(upstream: "http://127.0.0.1:\(upstream.port)", dataDirectory: sandbox + "/data")
        do {
            for n in bad.indices {
                for path in ["manifests/v1", "blobs/sha256:" + String(repeating: "a", count: 64)] {
                    let started = ContinuousClock.now
                    let answer = try await RawHTTP.request("GET /v2/bad\(n)/app/\(path) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
                    #expect([401, 404, 502, 503].contains(answer.status), "token answer \(n), \(path): \(answer.status) \(answer.bodyText.prefix(200))")
                    #expect(ContinuousClock.now - started < .seconds(10))
                }
            }
            let asked = Set(upstream.requests.filter { $0.path == "/token" }.compactMap { Self.badIndex($0.target) })
            #expect(asked == Set(bad.indices), "token answers used: \(asked.sorted())")
            let split = upstream.requests.filter { $0.header("x-injected") != nil || $0.headers.contains { $0.value.contains("\r") || $0.value.contains("\0") || $0.value.contains("\n") } }
            #expect(split.isEmpty, "\(split.prefix(3).map(\.headers))")
            #expect(wharf.child.isRunning)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
        try? FileManager.default.removeItem(atPath: sandbox)
    }
}

