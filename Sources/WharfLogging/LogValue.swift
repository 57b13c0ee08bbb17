import Logging

/// How Wharf spells values in its logs, so every line uses the same units.
public enum LogValue {
    /// A duration in milliseconds with microsecond precision (`18.812`), for `…_ms` fields: a
    /// number in JSON.
    public static func milliseconds(_ duration: Duration) -> Logger.MetadataValue {
        let (seconds, attoseconds) = duration.components
        let micros = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        return .stringConvertible(Double(micros) / 1000)
    }

    /// An integer (bytes, counts, statuses): a number in JSON.
    public static func integer(_ value: some BinaryInteger) -> Logger.MetadataValue { .stringConvertible(Int64(value)) }

    /// A boolean: `true`/`false`, a boolean in JSON.
    public static func bool(_ value: Bool) -> Logger.MetadataValue { .stringConvertible(value) }

    /// Text that came from a client (a path, a user agent), cut to `limit` characters (the log
    /// handler escapes what remains, so it cannot end its field or its line).
    public static func clientText(_ text: some StringProtocol, limit: Int) -> Logger.MetadataValue {
        .string(text.utf8.count <= limit ? String(text) : String(text.prefix(limit)) + "…")
    }
}
