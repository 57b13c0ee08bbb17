import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import WharfMirror
import WharfTestSupport

/// Lazy pulling through the cache: `Range` GETs of a layer nobody has cached yet are answered as soon
/// as their own bytes can be, from the fill in progress or from a ranged upstream GET beside it, while
/// one background fill (the only full GET) caches the whole blob.
@Suite(.serialized, .timeLimit(.minutes(3)), .tags(.integration))
struct RangedColdReadTests {
    static let size = 32 << 20
    /// The throttled link: a whole fill takes about `size / rate` = 8 s.
    static let rate = 4 << 20

    struct Answer {
        let status: Int
        let contentRange: String?
        let body: Data
        let took: Duration
    }

    static func get(_ client: HTTPClient, _ url: String, range: String?) async throws -> Answer {
        let started = ContinuousClock.now
        var request = HTTPClientRequest(url: url)
        if let range { request.headers.add(name: "Range", value: range) }
        let response = try await client.execute(request, timeout: .seconds(60))
        var body = Data()
        for try await chunk in response.body { body.append(contentsOf: chunk.readableBytesView) }
        return Answer(status: Int(response.status.code), contentRange: response.headers.first(name: "content-range"), body: body, took: ContinuousClock.now - started)
    }

    @Test("ranges of a cold, throttled layer answer in a fraction of the fill with exact bytes; one full GET caches it")
    func rangesOfAColdLayer() async throws {
        var blob: GeneratedBlob!, other: GeneratedBlob!
        try await withWharf(seed: { upstream in
            blob = try upstream.generator.rawBlob(size: Self.size)
            other = try upstream.generator.rawBlob(size: 70_000)
            try upstream.storage.addBlob(blob, repository: "team/lazy")
            try upstream.storage.addBlob(other, repository: "team/lazy")
        }, proxy: true) { f in
            let (wharf, proxy) = (f.wharf, f.proxy!)
            proxy.setMode(.throttle(bytesPerSecond: Self.rate))
            let bytes = try Data(contentsOf: URL(fileURLWithPath: blob.path))
            let url = "\(wharf.url)/v2/team/lazy/blobs/\(blob.digest)"
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                let started = ContinuousClock.now
                // The first request is a range in the middle: it starts the fill and is answered by a ranged upstream GET.
                let middle = 16 << 20
                let first = try await Self.get(client, url, range: "bytes=\(middle)-\(middle + (256 << 10) - 1)")
                #expect(first.status == 206 && first.contentRange == "bytes \(middle)-\(middle + (256 << 10) - 1)/\(Self.size)")
                #expect(first.body == bytes[middle..<(middle + (256 << 10))], "middle range: wrong bytes")

                // Concurrent readers: first bytes, the footer (suffix), and ranges at random offsets.
                var generator = SystemRandomNumberGenerator()
                var ranges: [(header: String, bounds: Range<Int>)] = [
                    ("bytes=0-4095", 0..<4096),
                    ("bytes=-51", (Self.size - 51)..<Self.size),
                    ("bytes=\(Self.size - 100_000)-", (Self.size - 100_000)..<Self.size),
                ]
                for _ in 0..<4 {
                    let length = Int.random(in: 1_000...(300 << 10), using: &generator)
                    let start = Int.random(in: (4 << 20)...(Self.size - length), using: &generator)
                    ranges.append(("bytes=\(start)-\(start + length - 1)", start..<(start + length)))
                }
                let answers = try await withThrowingTaskGroup(of: (Int, Answer).self) { group in
                    for (i, r) in ranges.enumerated() { group.addTask { (i, try await Self.get(client, url, range: r.header)) } }
                    var out: [Int: Answer] = [:]
                    for try await (i, a) in group { out[i] = a }
                    return out
                }
                for (i, r) in ranges.enumerated() {
                    let a = try #require(answers[i])
                    #expect(a.status == 206, "\(r.header): \(a.status)")
                    #expect(a.contentRange == "bytes \(r.bounds.lowerBound)-\(r.bounds.upperBound - 1)/\(Self.size)", "\(r.header)")
                    #expect(a.body == bytes[r.bounds], "\(r.header): wrong bytes")
                }

                // A range spanning what the fill has written so far: served from the fill, waiting only for its own tail.
                await eventually(within: .seconds(10)) { wharf.mirror.fills.inFlight == 1 && (Self.fillWritten(wharf) ?? 0) > (2 << 20) }
                let frontier = Self.fillWritten(wharf) ?? 0
                let span = (frontier - (512 << 10))..<(frontier + (128 << 10))
                let spanning = try await Self.get(client, url, range: "bytes=\(span.lowerBound)-\(span.upperBound - 1)")
                #expect(spanning.status == 206 && spanning.body == bytes[span], "spanning range: wrong answer")

                // The fill finishes and caches the blob; a whole GET is then a hit with the exact bytes.
                await eventually(within: .seconds(60), "the blob was not cached") { wharf.cachedBlobHexes().contains(String(blob.digest.dropFirst(7))) }
                let fillTime = ContinuousClock.now - started
                #expect(fillTime > .seconds(4), "the throttle did not hold: the fill took \(fillTime)")
                let latencies = ranges.indices.compactMap { answers[$0] }.map { "\($0.took)" }
                print("ranged cold reads: middle \(first.took), others \(latencies), spanning \(spanning.took), whole fill \(fillTime)")
                // Each range waited for its own bytes only: a third of the fill at most. Alone: 5-80 ms of
                // about 8 s. Beside the whole suite on 2 cores, one range was seen at a fifth of a 31-33 s fill.
                for a in answers.values + [first, spanning] { #expect(a.took * 3 < fillTime, "a range took \(a.took) of a \(fillTime) fill") }
                let whole = try await Self.get(client, url, range: nil)
                #expect(whole.status == 200 && whole.body == bytes)

                // One full GET upstream; ranged GETs brought in at most a quarter of the blob more.
                let gets = proxy.requests.filter { $0.method == "GET" && $0.uri.contains(blob.digest) }
                #expect(gets.filter { $0.range == nil }.count == 1, "the blob was fetched whole more than once")
                let rangedBytes = gets.compactMap(\.range).map(Self.length).reduce(0, +)
                #expect(rangedBytes > 0, "no range went upstream: the test proves nothing")
                #expect(Self.size + rangedBytes <= Self.size + Self.size / 4, "upstream sent \(Self.size + rangedBytes) bytes for a \(Self.size)-byte blob")
                #expect(wharf.mirror.stats.rangedRelays.value >= 1)

                // HEAD of a blob that is not cached still answers from the upstream's facts.
                var head = HTTPClientRequest(url: "\(wharf.url)/v2/team/lazy/blobs/\(other.digest)")
                head.method = .HEAD
                let h = try await client.execute(head, timeout: .seconds(30))
                #expect(h.status == .ok && h.headers.first(name: "content-length") == String(other.size))
            } catch {
                Issue.record(error)
            }
            try await client.shutdown()
        }
    }

    @Test("without a throttle: concurrent ranges of a cold layer are exact, and the upstream sends at most 1.25 × the blob")
    func rangesUnthrottled() async throws {
        var blob: GeneratedBlob!
        try await withWharf(seed: { upstream in
            blob = try upstream.generator.rawBlob(size: Self.size)
            try upstream.storage.addBlob(blob, repository: "team/lazy")
        }, proxy: true) { f in
            let (wharf, proxy) = (f.wharf, f.proxy!)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: blob.path))
            let url = "\(wharf.url)/v2/team/lazy/blobs/\(blob.digest)"
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                let started = ContinuousClock.now
                var generator = SystemRandomNumberGenerator()
                var ranges: [Range<Int>] = [0..<4096, (Self.size - 51)..<Self.size]
                for _ in 0..<6 {
                    let length = Int.random(in: 1_000...(1 << 20), using: &generator)
                    let start = Int.random(in: 0...(Self.size - length), using: &generator)
                    ranges.append(start..<(start + length))
                }
                let answers = try await withThrowingTaskGroup(of: (Range<Int>, Answer).self) { group in
                    for r in ranges { group.addTask { (r, try await Self.get(client, url, range: "bytes=\(r.lowerBound)-\(r.upperBound - 1)")) } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                for (r, a) in answers {
                    #expect(a.status == 206 && a.body == bytes[r], "bytes=\(r.lowerBound)-\(r.upperBound - 1): \(a.status), \(a.body.count) bytes")
                }
                await eventually(within: .seconds(30), "the blob was not cached") { wharf.cachedBlobHexes().contains(String(blob.digest.dropFirst(7))) }
                let fillTime = ContinuousClock.now - started
                print("ranged cold reads, no throttle: \(answers.map { "\($0.1.took)" }), whole fill cached after \(fillTime)")
                let gets = proxy.requests.filter { $0.method == "GET" && $0.uri.contains(blob.digest) }
                #expect(gets.filter { $0.range == nil }.count == 1, "the blob was fetched whole more than once")
                let rangedBytes = gets.compactMap(\.range).map(Self.length).reduce(0, +)
                #expect(rangedBytes <= Self.size / 4, "ranged upstream GETs brought \(rangedBytes) bytes")
            } catch {
                Issue.record(error)
            }
            try await client.shutdown()
        }
    }

    /// Bytes the running fill has written (nil when none runs).
    static func fillWritten(_ wharf: WharfInstance) -> Int? {
        wharf.mirror.fills.runningSnapshots.first.map { Int($0.written) }
    }

    /// The length of an upstream `Range: bytes=A-B` request.
    static func length(_ header: String) -> Int {
        let parts = header.dropFirst(6).split(separator: "-").compactMap { Int($0) }
        return parts.count == 2 ? parts[1] - parts[0] + 1 : 0
    }
}
