import Foundation
import Logging
import Synchronization
import Testing
@testable import WharfLogging
import WharfTestSupport

/// The log handler's lines, read back by a logfmt parser written here (go-logfmt's rules) and by
/// JSONSerialization: every value survives whatever a client put in it, one event stays one line.
@Suite(.tags(.unit))
struct LogHandlerTests {
    /// Collects written lines.
    final class Capture: Sendable {
        private let bytes = Mutex<[UInt8]>([])
        var text: String { String(decoding: self.bytes.withLock { $0 }, as: UTF8.self) }
        var sink: LogSink { LogSink { line in self.bytes.withLock { $0 += line } } }

        func logger(_ format: LogFormat, level: Logger.Level = .info) -> Logger {
            Logger(label: "wharf") { _ in WharfLogHandler(format: format, level: level, sink: self.sink) }
        }
    }

    /// Strings a client can send (or an error can hold) that break naive formatters.
    static let hostile: [String] = [
        "", " ", "plain", "two words", #"say "hi""#, #"back\slash"#, "a=b", "k=v x=y", "tab\there", "new\nline", "cr\rlf\r\n",
        "nul\u{0}byte", "del\u{7F}", "c1\u{85}next", "ls\u{2028}ps\u{2029}", "ünïcødé 🚢", #"\""#, #"""#, "=", "\\",
        #"Mozilla/5.0 "evil" level=error msg="forged" \"#,
    ]

    @Test("logfmt: hostile values round-trip through a logfmt parser, one line per event")
    func logfmtRoundTrip() throws {
        let capture = Capture()
        let logger = capture.logger(.text)
        for (i, value) in Self.hostile.enumerated() {
            logger.info("request", metadata: ["user_agent": .string(value), "id": LogValue.integer(i), "path": .string(value)])
        }
        let lines = capture.text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == Self.hostile.count + 1 && lines.last == "", "\(lines.count) lines")
        for (i, line) in lines.dropLast().enumerated() {
            let fields = try LogfmtParser.parse(String(line))
            let dict = Dictionary(fields, uniquingKeysWith: { a, _ in a })
            #expect(fields.map(\.0).prefix(4) == ["time", "level", "msg", "id"], "\(line)")
            #expect(dict["level"] == "info" && dict["msg"] == "request" && dict["id"] == "\(i)")
            #expect(dict["user_agent"] == Self.hostile[i], "\(line)")
            #expect(dict["path"] == Self.hostile[i])
            #expect(fields.count == 6, "no field was forged: \(line)")
        }
    }

    @Test("JSON: hostile values round-trip through JSONSerialization; numbers and booleans are typed")
    func jsonRoundTrip() throws {
        let capture = Capture()
        let logger = capture.logger(.json)
        for value in Self.hostile {
            logger.info("request", metadata: [
                "user_agent": .string(value), "status": LogValue.integer(404), "bytes": LogValue.integer(Int64(1) << 40),
                "duration_ms": LogValue.milliseconds(.microseconds(18_812)), "aborted": LogValue.bool(true), "note": "\(value)",
            ])
        }
        let lines = capture.text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == Self.hostile.count + 1)
        for (i, line) in lines.dropLast().enumerated() {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            #expect(object["user_agent"] as? String == Self.hostile[i], "\(line)")
            #expect(object["note"] as? String == Self.hostile[i])
            #expect(object["msg"] as? String == "request" && object["level"] as? String == "info")
            #expect(object["status"] as? Int == 404)
            #expect(object["bytes"] as? Int64 == 1 << 40)
            #expect(object["duration_ms"] as? Double == 18.812)
            #expect(object["aborted"] as? Bool == true)
            #expect(line.hasPrefix(#"{"time":""#))
        }
    }

    @Test("timestamps are RFC 3339 UTC with milliseconds, and now")
    func timestamps() throws {
        let capture = Capture()
        capture.logger(.text).notice("x")
        capture.logger(.json).warning("y")
        let lines = capture.text.split(separator: "\n")
        let text = try #require(try LogfmtParser.parse(String(lines[0])).first { $0.0 == "time" }?.1)
        let json = try #require((try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as? [String: Any])?["time"] as? String)
        for stamp in [text, json] {
            #expect(stamp.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil, "\(stamp)")
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            let date = try #require(formatter.date(from: stamp))
            #expect(abs(date.timeIntervalSinceNow) < 5)
        }
        #expect(lines[0].contains(" level=notice msg=x") && lines[1].contains(#""level":"warning","msg":"y""#))
    }

    @Test("field order, merged metadata, the level, errors, and metadata named like the handler's own fields")
    func fields() throws {
        let capture = Capture()
        var logger = capture.logger(.text, level: .notice)
        logger[metadataKey: "component"] = "mirror"
        logger.info("dropped: below the level")
        logger.notice("event", metadata: ["zeta": "1", "alpha": "2", "status": "200", "client": "10.0.0.1", "msg": "forged", "time": "0"])
        logger.error("failed", error: CocoaError(.fileNoSuchFile))
        let lines = capture.text.split(separator: "\n").map(String.init)
        #expect(lines.count == 2, "\(lines)")
        let event = try LogfmtParser.parse(lines[0])
        #expect(event.map(\.0) == ["time", "level", "msg", "client", "status", "alpha", "component", "_msg", "_time", "zeta"], "\(lines[0])")
        #expect(event.first { $0.0 == "msg" }?.1 == "event")
        let failed = Dictionary(try LogfmtParser.parse(lines[1]), uniquingKeysWith: { a, _ in a })
        #expect(failed["level"] == "error" && failed["error"]?.isEmpty == false)
    }

    @Test("client text is bounded; durations are milliseconds")
    func values() {
        #expect(LogValue.clientText("short", limit: 256).description == "short")
        let long = String(repeating: "a", count: 10_000)
        #expect(LogValue.clientText(long, limit: 256).description == String(repeating: "a", count: 256) + "…")
        #expect(LogValue.milliseconds(.seconds(2) + .microseconds(1500)).description == "2001.5")
        #expect(LogValue.milliseconds(.nanoseconds(999)).description == "0.0")
        #expect(LogValue.milliseconds(.microseconds(18_812)).description == "18.812")
    }
}
