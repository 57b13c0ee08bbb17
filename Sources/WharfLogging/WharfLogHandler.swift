#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import Synchronization

/// How log lines are written: `text` (logfmt) or `json` (one object per line).
public enum LogFormat: String, Sendable, CaseIterable {
    /// logfmt: `time=… level=info msg=request status=200 user_agent="curl/8.5 (x)"`.
    case text
    /// One JSON object per line: `{"time":"…","level":"info","msg":"request","status":200,…}`.
    case json
}

/// Where finished lines go: standard error, or (in tests) anything that takes bytes.
public struct LogSink: Sendable {
    let write: @Sendable ([UInt8]) -> Void

    public init(_ write: @escaping @Sendable ([UInt8]) -> Void) { self.write = write }

    /// Standard error, one whole line per `write(2)` (lines from several threads never interleave).
    public static let standardError: LogSink = {
        let lock = Mutex<Void>(())
        return LogSink { line in
            lock.withLock { _ in
                line.withUnsafeBytes { writeAll(2, $0) }
            }
        }
    }()
}

/// Writes all of `bytes` to `fd`, retrying short writes and EINTR; gives up on any other error.
private func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) {
    guard let base = bytes.baseAddress else { return }
    var offset = 0
    while offset < bytes.count {
        let n = write(fd, base + offset, bytes.count - offset)
        if n > 0 { offset += n } else if n < 0, errno == EINTR { continue } else { return }
    }
}

/// Wharf's log handler: one line per event, logfmt or JSON, with a millisecond UTC timestamp, the
/// level, the message and the metadata. Values are escaped, so whatever a client sends (a user agent
/// with quotes, `=`, backslashes or control characters) stays inside its field and its line.
///
/// Field order: `time`, `level`, `msg`, then the access log's fields in a fixed order
/// (``leadingKeys``), then the rest sorted by key.
public struct WharfLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level
    private let format: LogFormat
    private let sink: LogSink

    /// Metadata keys written first, in this order, when present (the access log's).
    public static let leadingKeys = [
        "id", "client", "method", "path", "status", "bytes", "duration_ms", "cache", "kind", "upstream", "repository", "aborted",
        "user_agent",
    ]
    private static let leadingRank: [String: Int] = Dictionary(uniqueKeysWithValues: Self.leadingKeys.enumerated().map { ($1, $0) })
    /// Names of the fields the handler writes itself; metadata under these keys is written as `_<key>`.
    private static let ownKeys: Set<String> = ["time", "level", "msg"]

    public init(format: LogFormat, level: Logger.Level = .info, sink: LogSink = .standardError, metadataProvider: Logger.MetadataProvider? = nil) {
        self.format = format
        self.logLevel = level
        self.sink = sink
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = self.metadata
        if let provided = self.metadataProvider?.get() { fields.merge(provided) { $1 } }
        if let own = event.metadata { fields.merge(own) { $1 } }
        if let error = event.error, fields["error"] == nil { fields["error"] = .string("\(error)") }
        let line = Self.render(
            self.format, time: LogTimestamp.now(), level: event.level, message: event.message.description, metadata: fields)
        self.sink.write(line)
    }

    /// One line, newline included.
    static func render(_ format: LogFormat, time: LogTimestamp, level: Logger.Level, message: String, metadata: Logger.Metadata) -> [UInt8] {
        let keys = metadata.keys.sorted { a, b in
            switch (Self.leadingRank[a], Self.leadingRank[b]) {
            case let (x?, y?): x < y
            case (.some, nil): true
            case (nil, .some): false
            case (nil, nil): a < b
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(256)
        switch format {
        case .text:
            out.append(contentsOf: "time=".utf8)
            time.write(into: &out)
            out.append(contentsOf: " level=".utf8)
            out.append(contentsOf: level.rawValue.utf8)
            out.append(contentsOf: " msg=".utf8)
            Logfmt.value(message, into: &out)
            for key in keys {
                out.append(UInt8(ascii: " "))
                Logfmt.key(Self.ownKeys.contains(key) ? "_" + key : key, into: &out)
                out.append(UInt8(ascii: "="))
                Logfmt.value(metadata[key]!.description, into: &out)
            }
        case .json:
            out.append(contentsOf: #"{"time":""#.utf8)
            time.write(into: &out)
            out.append(contentsOf: #"","level":""#.utf8)
            out.append(contentsOf: level.rawValue.utf8)
            out.append(contentsOf: #"","msg":"#.utf8)
            JSONText.string(message, into: &out)
            for key in keys {
                out.append(UInt8(ascii: ","))
                JSONText.string(Self.ownKeys.contains(key) ? "_" + key : key, into: &out)
                out.append(UInt8(ascii: ":"))
                JSONText.value(metadata[key]!, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "\n"))
        return out
    }
}

/// A wall-clock instant as written in logs: RFC 3339 in UTC with milliseconds, `2025-06-01T12:00:00.123Z`.
struct LogTimestamp: Sendable {
    let seconds: Int
    let milliseconds: Int

    static func now() -> LogTimestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return LogTimestamp(seconds: Int(ts.tv_sec), milliseconds: Int(ts.tv_nsec) / 1_000_000)
    }

    func write(into out: inout [UInt8]) {
        var t = time_t(self.seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        func digits(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            var v = value
            while divisor > 0 {
                out.append(UInt8(ascii: "0") + UInt8(v / divisor % 10))
                v %= divisor
                divisor /= 10
            }
        }
        digits(Int(parts.tm_year) + 1900, 4)
        out.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mon) + 1, 2)
        out.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mday), 2)
        out.append(UInt8(ascii: "T"))
        digits(Int(parts.tm_hour), 2)
        out.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_min), 2)
        out.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_sec), 2)
        out.append(UInt8(ascii: "."))
        digits(self.milliseconds, 3)
        out.append(UInt8(ascii: "Z"))
    }
}

/// logfmt as go-logfmt writes and reads it: `key=value`, the value in double quotes (with `\"`, `\\`,
/// `\n`, `\r`, `\t` and `\u00XX` escapes) when it is empty or holds a space, `=`, `"`, `\` or a
/// control character.
enum Logfmt {
    static func key(_ key: String, into out: inout [UInt8]) {
        guard !key.isEmpty else { return out.append(UInt8(ascii: "_")) }
        for b in key.utf8 {
            out.append(b <= 0x20 || b == UInt8(ascii: "=") || b == UInt8(ascii: "\"") || b >= 0x7F ? UInt8(ascii: "_") : b)
        }
    }

    static func value(_ value: String, into out: inout [UInt8]) {
        let needsQuotes = value.isEmpty || value.unicodeScalars.contains { s in
            s.value <= 0x20 || s == "=" || s == "\"" || s == "\\" || Escaping.isControl(s)
        }
        guard needsQuotes else { return out.append(contentsOf: value.utf8) }
        out.append(UInt8(ascii: "\""))
        Escaping.escaped(value, into: &out)
        out.append(UInt8(ascii: "\""))
    }
}

/// JSON text for log values: numbers and booleans as such, strings escaped, arrays and dictionaries nested.
enum JSONText {
    static func string(_ value: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        Escaping.escaped(value, into: &out)
        out.append(UInt8(ascii: "\""))
    }

    static func value(_ value: Logger.MetadataValue, into out: inout [UInt8]) {
        switch value {
        case .string(let s):
            self.string(s, into: &out)
        case .stringConvertible(let c):
            if let number = self.number(c) { out.append(contentsOf: number.utf8) } else { self.string(c.description, into: &out) }
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                self.value(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .dictionary(let fields):
            out.append(UInt8(ascii: "{"))
            for (i, key) in fields.keys.sorted().enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                self.string(key, into: &out)
                out.append(UInt8(ascii: ":"))
                self.value(fields[key]!, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// The JSON spelling of an integer, a finite floating-point number or a boolean; nil for anything else.
    private static func number(_ c: any CustomStringConvertible & Sendable) -> String? {
        switch c {
        case let b as Bool: return b ? "true" : "false"
        case is Int, is Int64, is Int32, is UInt, is UInt64, is UInt32: return c.description
        case let d as Double: return d.isFinite ? d.description : nil
        default: return nil
        }
    }
}

/// The escapes logfmt (quoted) and JSON strings share.
enum Escaping {
    /// C0 and C1 controls, DEL, and the Unicode line and paragraph separators: never written raw.
    static func isControl(_ s: Unicode.Scalar) -> Bool {
        s.value < 0x20 || (0x7F...0x9F).contains(s.value) || s.value == 0x2028 || s.value == 0x2029
    }

    static func escaped(_ value: String, into out: inout [UInt8]) {
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out.append(contentsOf: #"\""#.utf8)
            case "\\": out.append(contentsOf: #"\\"#.utf8)
            case "\n": out.append(contentsOf: #"\n"#.utf8)
            case "\r": out.append(contentsOf: #"\r"#.utf8)
            case "\t": out.append(contentsOf: #"\t"#.utf8)
            case _ where self.isControl(scalar):
                out.append(contentsOf: #"\u"#.utf8)
                let hex = Array("0123456789abcdef".utf8)
                for shift in stride(from: 12, through: 0, by: -4) { out.append(hex[Int(scalar.value >> UInt32(shift)) & 0xF]) }
            default:
                UTF8.encode(scalar) { out.append($0) }
            }
        }
    }
}
