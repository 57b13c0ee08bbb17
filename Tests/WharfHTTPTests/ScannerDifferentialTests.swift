import Foundation
import NIOCore
import NIOHTTP1
import Testing
import WharfTestSupport
@testable import WharfHTTP

/// The hit path reads request heads with its own scanner (``HitRequestScanner``) instead of NIO's
/// decoder. Whatever the scanner takes must mean to it exactly what it means to the decoder, or a
/// hit could answer a request NIO would refuse, read it differently, or frame the next one
/// differently (request smuggling). Thousands of seeded random heads, well-formed and mutated, go
/// through both.
@Suite(.tags(.unit))
struct ScannerDifferentialTests {
    /// The server's default head limit, and a small one so that oversize heads are common.
    static let limits = [16 * 1024, 600]
    static let marker = Array("GET /next-request HTTP/1.1\r\nHost: m\r\n\r\n".utf8)

    /// Why the scanner and the decoder disagree on `head`, or nil if the scanner does not take it or they agree.
    static func disagreement(_ head: [UInt8], maxHeadBytes: Int) -> String? {
        guard case .request(let request, let length) = HitRequestScanner.scan(head, maxHeadBytes: maxHeadBytes) else { return nil }
        // Taken whole or in pieces, the scanner reads the same.
        var searched = 0
        var incremental: HitRequestScanner.Scan = .incomplete
        for end in 1...head.count {
            incremental = Array(head[..<end]).withUnsafeBytes {
                HitRequestScanner.scan($0, maxHeadBytes: maxHeadBytes, searchedTo: searched, userAgent: true)
            }
            guard case .incomplete = incremental else { break }
            searched = end
        }
        guard case .request(let again, let againLength) = incremental, againLength == length, Self.same(again, request) else {
            return "scanned in pieces: \(incremental), whole: \(request) length \(length)"
        }
        // The decoder sees the head followed by another request, as on a keep-alive connection.
        let nio = DecoderVerdict.decode(head + Self.marker, maxHeadBytes: maxHeadBytes)
        guard nio.parts.count >= 2, case .head(let h) = nio.parts[0] else {
            return "decoder: no head (error \(String(describing: nio.error)), parts \(nio.parts))"
        }
        guard case .end = nio.parts[1] else { return "decoder: a body follows the head: \(nio.parts[1])" }
        var problems: [String] = []
        if h.method != (request.isHead ? .HEAD : .GET) { problems.append("method \(h.method) vs isHead \(request.isHead)") }
        if h.uri != request.uri { problems.append("uri \(h.uri.debugDescription) vs \(request.uri.debugDescription)") }
        if h.version != .http1_1 { problems.append("version \(h.version)") }
        if h.isKeepAlive != request.keepAlive { problems.append("keep-alive \(h.isKeepAlive) vs \(request.keepAlive)") }
        if let fromDecoder = HitRequest(h) {
            if fromDecoder.needsAsync != request.needsAsync { problems.append("needsAsync \(fromDecoder.needsAsync) vs \(request.needsAsync)") }
            if fromDecoder.accept != request.accept { problems.append("accept \(fromDecoder.accept) vs \(request.accept)") }
            if fromDecoder.ifNoneMatch != request.ifNoneMatch { problems.append("if-none-match \(fromDecoder.ifNoneMatch) vs \(request.ifNoneMatch)") }
            if fromDecoder.userAgent != request.userAgent {
                problems.append("user-agent \(String(describing: fromDecoder.userAgent)) vs \(String(describing: request.userAgent))")
            }
        } else {
            problems.append("the decoder's head is not a hit candidate")
        }
        // Framing: what follows the scanner's head decodes, on its own, as what the decoder read after it.
        // (After a request without keep-alive the decoder refuses more data, and the hit path reads no more.)
        guard request.keepAlive else { return problems.isEmpty ? nil : problems.joined(separator: "; ") }
        let rest = DecoderVerdict.decode(Array(head[length...]) + Self.marker, maxHeadBytes: maxHeadBytes)
        let after = nio.heads.dropFirst().map { "\($0.method) \($0.uri)" }
        if rest.heads.map({ "\($0.method) \($0.uri)" }) != after || (rest.error == nil) != (nio.error == nil) {
            problems.append("framing: after the scanner's \(length) bytes the decoder reads \(rest.heads.map(\.uri)) (error \(String(describing: rest.error))), continuing it read \(after) (error \(String(describing: nio.error)))")
        }
        return problems.isEmpty ? nil : problems.joined(separator: "; ")
    }

    static func same(_ a: HitRequest, _ b: HitRequest) -> Bool {
        a.isHead == b.isHead && a.uri == b.uri && a.keepAlive == b.keepAlive && a.needsAsync == b.needsAsync && a.accept == b.accept
            && a.ifNoneMatch == b.ifNoneMatch && a.userAgent == b.userAgent
    }

    static func printable(_ bytes: [UInt8]) -> String {
        bytes.map { b in
            switch b {
            case 0x0D: "\\r"
            case 0x0A: "\\n"
            case 0x09: "\\t"
            case 0x20..<0x7F: String(UnicodeScalar(b))
            default: "\\x" + String(b, radix: 16)
            }
        }.joined()
    }

    /// Runs `count` generated cases and records every disagreement (up to 20); returns how many heads the scanner took.
    static func run(seed: UInt64, count: Int, mutate: Bool) -> (taken: Int, refused: Int) {
        var random = SeededRandom(seed: seed)
        var taken = 0, refused = 0, reported = 0
        for i in 0..<count {
            let valid = RequestHeadGenerator.validHead(&random)
            let head = mutate ? RequestHeadGenerator.mutated(valid, &random) : valid
            let limit = random.pick(Self.limits)
            if case .request = HitRequestScanner.scan(head, maxHeadBytes: limit) { taken += 1 } else { refused += 1 }
            if let problem = Self.disagreement(head, maxHeadBytes: limit), reported < 20 {
                reported += 1
                Issue.record("seed \(seed) case \(i) (limit \(limit)): \(problem)\n  head: \(Self.printable(head))")
            }
        }
        return (taken, refused)
    }

    @Test("well-formed GET/HEAD heads with random headers: the scanner and NIO's decoder agree on every head the scanner takes")
    func wellFormedHeads() {
        let (taken, refused) = Self.run(seed: 0x5EED_0001, count: 4000, mutate: false)
        // The generator mostly makes takeable heads: if the scanner took few, this test proved little.
        #expect(taken > 2000, "the scanner took \(taken) of 4000 well-formed heads (refused \(refused))")
    }

    @Test("mutated heads (bare LF, obs-fold, bodies, NUL, long lines, odd versions, methods and targets…): no disagreement")
    func mutatedHeads() {
        // Fixed, so a failure repeats; WHARF_FUZZ_SEED and WHARF_FUZZ_COUNT explore further.
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["WHARF_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x5EED_0002
        let count = max(8000, environment["WHARF_FUZZ_COUNT"].flatMap { Int($0) } ?? 8000)
        let (taken, refused) = Self.run(seed: seed, count: count, mutate: true)
        // Most mutations make a head the scanner must refuse; enough are takeable (trailing whitespace,
        // extra Connection lines, obs-text, odd targets) for both sides to be exercised.
        #expect(taken > count / 40 && refused > count / 2, "taken \(taken), refused \(refused): the mutations do not exercise both sides")
    }

    /// Heads a scanner is easy to get wrong, each checked on its own (and kept as regressions).
    static let fixedCases: [String] = [
        "GET /v2/ HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nConnection: keep-alive, keep-alive\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nConnection: close, close\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nConnection: ,close\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nConnection: \tclose\t\r\n\r\n",
        // Found by this test: llhttp keeps "close<HT>" alive (the scanner closed it), and keeps trailing
        // whitespace in values (the scanner trimmed it).
        "GET /v2/ HTTP/1.1\r\nConnection: close\t\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nConnection:  CLOSE \t\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nConnection: close \r\n\r\n",
        "GET /v2/a/manifests/v1 HTTP/1.1\r\nAccept: */* \r\nIf-None-Match: \"sha256:abc\" \t\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nAccept: a \t\r\nAccept:\tb\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nIf-None-Match: \r\n\r\n",
        "HEAD /v2/a/blobs/sha256:00 HTTP/1.1\r\nRange: \r\n\r\n",
        "GET /v2/%00 HTTP/1.1\r\n\r\n",
        "GET /a#b HTTP/1.1\r\n\r\n",
        "GET /a\"b HTTP/1.1\r\n\r\n",
        "GET /a{b}|c\\d^e`f HTTP/1.1\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nX-Obs: caf\u{E9}\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /v2/ HTTP/1.1\r\n\r\n\r\n",
    ]

    @Test("fixed edge cases: no disagreement", arguments: Self.fixedCases)
    func fixedCase(_ head: String) {
        for limit in Self.limits {
            if let problem = Self.disagreement(Array(head.utf8), maxHeadBytes: limit) { Issue.record("limit \(limit): \(problem)") }
        }
    }

    @Test("heads at the size limit: the scanner takes none the decoder refuses")
    func sizeLimit() {
        for limit in [600, 1024, 16 * 1024] {
            for padding in (limit - 80)...(limit + 8) {
                let value = String(repeating: "a", count: max(0, padding - 40))
                let head = Array("GET /v2/ HTTP/1.1\r\nX-Pad: \(value)\r\n\r\n".utf8)
                if let problem = Self.disagreement(head, maxHeadBytes: limit) { Issue.record("limit \(limit), \(head.count) bytes: \(problem)") }
            }
        }
    }

    /// Found by the mutated-heads test: a head a few bytes over the limit was taken when it arrived
    /// whole but refused when it arrived in pieces. A head is taken only if it is at most the limit.
    @Test("the head limit is the same whole and in pieces: at most maxHeadBytes, counting the final CRLFCRLF")
    func limitIncludesEnd() {
        for length in 596...606 {
            let head = Array(("GET /v2/ HTTP/1.1\r\nX-Pad: " + String(repeating: "a", count: length - 30) + "\r\n\r\n").utf8)
            #expect(head.count == length)
            let whole = HitRequestScanner.scan(head, maxHeadBytes: 600)
            if case .request = whole { #expect(length <= 600) } else { #expect(length > 600, "\(length) bytes refused: \(whole)") }
            if let problem = Self.disagreement(head, maxHeadBytes: 600) { Issue.record("\(length) bytes: \(problem)") }
        }
    }
}
