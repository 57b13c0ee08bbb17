/// Durations shown to people in the form the configuration and the flags read back:
/// `45s`, `5m`, `1h30m`, `6h`; `0s` for zero.
public enum DurationText {
    public static func string(seconds: Int) -> String {
        guard seconds > 0 else { return "\(seconds)s" }
        let parts = [(seconds / 3600, "h"), (seconds % 3600 / 60, "m"), (seconds % 60, "s")].filter { $0.0 > 0 }
        return parts.map { "\($0.0)\($0.1)" }.joined()
    }
}
