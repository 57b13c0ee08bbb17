import RateLimiting
import Foundation
import Logging
import Testing
import WharfAuth
import WharfMirror
import WharfTestSupport
import WharfUpstream
#if canImport(Glibc)
import Glibc
#endif

/// Issue #12, htpasswd timing: user enumeration by response time, and wrong passwords delaying right ones.
@Suite(.serialized, .timeLimit(.minutes(10)), .tags(.integration))
struct LoginFloodTests {
    /// Dear enough that 400 checks queue for seconds, cheap enough for a test (about 15 ms here).
    static let cost: UInt8 = 8

    /// An htpasswd file with carol, dave and erin, and the folder holding it.
    static func htpasswd() throws -> (dir: String, file: String) {
        let dir = try TempDirectory.make("htpasswd-flood")
        let file = dir + "/htpasswd"
        let text = [("carol", "carol-pw"), ("dave", "dave-pw"), ("erin", "erin-pw")].map { HtpasswdFile.entry(user: $0.0, password: $0.1, cost: Self.cost) }
        try (text.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        return (dir, file)
    }

    /// A Wharf in htpasswd mode; `/v2/` is all these tests ask, so the upstream is never contacted.
    static func wharf(_ file: String, limits: LoginLimits = LoginLimits()) async throws -> WharfInstance {
        let upstream = MirrorUpstream(configuration: try UpstreamConfiguration(name: "unused", url: "http://127.0.0.1:9"), isDefault: true)
        return try await WharfInstance.start(upstreams: [upstream], auth: { logger in
            ClientAuthenticator(mode: .htpasswd, htpasswd: try HtpasswdFile(path: file, limits: limits, logger: logger), allowWithoutTLS: true, logger: logger)
        })
    }

    static func ping(user: String, password: String) -> String {
        "GET /v2/ HTTP/1.1\r\nHost: w\r\nConnection: close\r\nAuthorization: \(ClientAuthTests.basic(user, password))\r\n\r\n"
    }

    /// Round-trip time of one request on a new connection.
    static func timed(_ request: String, port: Int, source: String? = nil) async throws -> (RawHTTP.Response, Duration) {
        let started = ContinuousClock.now
        let response = try await RawHTTP.request(request, port: port, source: source)
        return (response, ContinuousClock.now - started)
    }

    static func median(_ samples: [Duration]) -> Duration { samples.sorted()[samples.count / 2] }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

    static func ms(_ d: Duration) -> String { String(format: "%.2f ms", Self.seconds(d) * 1000) }

    @Test("an unknown user takes as long to refuse as a known user with a wrong password")
    func noEnumerationByTiming() async throws {
        let (dir, file) = try Self.htpasswd()
        // Limits out of the way: this measures the check itself.
        let generous = LoginLimits(perAddress: KeyedRate(failures: 10_000, per: .seconds(60)), perUser: KeyedRate(failures: 10_000, per: .seconds(60)))
        let wharf = try await Self.wharf(file, limits: generous)
        do {
            // Alternating pairs, so both sides of a pair see the same load on the machine.
            var unknown: [Duration] = [], known: [Duration] = [], ratios: [Double] = []
            for i in 0..<31 {
                let (u, tu) = try await Self.timed(Self.ping(user: "nobody-\(i)", password: "guess-\(i)"), port: wharf.port)
                let (k, tk) = try await Self.timed(Self.ping(user: "carol", password: "guess-\(i)"), port: wharf.port)
                #expect(u.status == 401 && k.status == 401, "\(u.status) \(k.status)")
                unknown.append(tu)
                known.append(tk)
                ratios.append(Self.seconds(tu) / Self.seconds(tk))
            }
            let ratio = ratios.sorted()[ratios.count / 2]
            print("login timing: unknown user median \(Self.ms(Self.median(unknown))), known user with a wrong password median \(Self.ms(Self.median(known))), median ratio \(String(format: "%.2f", ratio))")
            #expect(ratio > 0.5 && ratio < 2, "unknown \(Self.ms(Self.median(unknown))) vs known \(Self.ms(Self.median(known)))")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Sends 400 requests on 400 connections from 127.0.0.1 (`request(i)`), then `login` from
    /// 127.0.0.2 before reading any of the 400 answers: the login's round trip, and the 400 answers.
    static func loginBehind(_ request: @escaping @Sendable (Int) -> String, login: String, port: Int) async throws -> (RawHTTP.Response, Duration, [RawHTTP.Response]) {
        let flood = try await RawHTTP.onOwnThread { try (0..<400).map { i in try Self.send(request(i), port: port, source: "127.0.0.1") } }
        let (first, time) = try await Self.timed(login, port: port, source: "127.0.0.2")
        let answers = try await RawHTTP.onOwnThread { flood.map { Self.receive($0) } }
        return (first, time, answers)
    }

    @Test("400 wrong passwords at once from one address delay a first login from another address by less than a second")
    func floodDoesNotDelayOthers() async throws {
        let (dir, file) = try Self.htpasswd()
        let wharf = try await Self.wharf(file)
        do {
            let port = wharf.port
            // Baseline: behind 400 requests without credentials (answered 401 with no password check).
            let (base, baseTime, anonymous) = try await Self.loginBehind(
                { _ in "GET /v2/ HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n" }, login: Self.ping(user: "erin", password: "erin-pw"), port: port)
            #expect(base.status == 200 && anonymous.allSatisfy { $0.status == 401 })
            // Behind 400 wrong passwords for dave, each on its own connection, all sent before any answer is read.
            let floodStarted = ContinuousClock.now
            let (first, firstTime, answers) = try await Self.loginBehind(
                { i in Self.ping(user: "dave", password: "wrong-\(i)") }, login: Self.ping(user: "carol", password: "carol-pw"), port: port)
            let floodTime = ContinuousClock.now - floodStarted
            var statuses: [Int: Int] = [:]
            for answer in answers { statuses[answer.status, default: 0] += 1 }
            print("""
                login flood: valid first login \(Self.ms(firstTime)) behind 400 wrong passwords (status \(first.status)), \
                \(Self.ms(baseTime)) behind 400 requests without credentials; \
                the 400 wrong passwords answered in \(Self.ms(floodTime)): \(statuses.sorted { $0.key < $1.key })
                """)
            #expect(first.status == 200, "\(first.status) \(first.bodyText)")
            #expect(firstTime - baseTime < .seconds(1), "a valid first login waited \(Self.ms(firstTime)), \(Self.ms(baseTime)) without the wrong passwords")
            #expect(statuses.keys.allSatisfy { [401, 429, 503].contains($0) }, "\(statuses)")
            #expect(statuses[401, default: 0] <= 12, "bcrypt ran for at most the address's budget: \(statuses)")
            let limited = answers.filter { $0.status == 429 }
            #expect(!limited.isEmpty && limited.allSatisfy { Int($0.header("retry-after") ?? "") ?? 0 >= 1 && $0.bodyText.contains("TOOMANYREQUESTS") })
            // From the flooded address: carol's verified login still passes (remembered, no bcrypt), a guess does not.
            let remembered = try await RawHTTP.request(Self.ping(user: "carol", password: "carol-pw"), port: port, source: "127.0.0.1")
            #expect(remembered.status == 200, "\(remembered.status)")
            let guess = try await RawHTTP.request(Self.ping(user: "carol", password: "wrong"), port: port, source: "127.0.0.1")
            #expect(guess.status == 429, "\(guess.status)")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Connects from `source` and sends `request`; the answer is left unread.
    static func send(_ request: String, port: Int, source: String) throws -> Int32 {
        let fd = try RawHTTP.connect(port: port, source: source)
        let bytes = Array(request.utf8)
        let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == bytes.count else {
            close(fd)
            throw POSIXError(.EIO)
        }
        return fd
    }

    /// Reads one `Connection: close` answer to its end and closes the socket.
    static func receive(_ fd: Int32) -> RawHTTP.Response {
        defer { close(fd) }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received.append(contentsOf: chunk[0..<n])
        }
        return RawHTTP.parse(received) ?? RawHTTP.Response(status: 0, headers: [], body: [], raw: received)
    }
}
