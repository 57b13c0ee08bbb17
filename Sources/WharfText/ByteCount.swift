/// Byte counts shown to people, always in IEC units (powers of 1024): `512 B`, `1.5 KiB`, `200.0 GiB`.
///
/// Input is another matter: sizes typed by people (`--max-size`, `--max-rate`, `max-size:`) accept
/// both `MB` (10^6) and `MiB` (2^20); see `ByteSize` in WharfConfig.
public enum ByteCount {
    static let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]

    /// Whole bytes below 1 KiB, else one decimal and the largest unit that keeps the number at 1 or more.
    public static func string(_ bytes: Int64) -> String {
        guard bytes >= 1024 || bytes <= -1024 else { return "\(bytes) B" }
        var value = Double(bytes.magnitude)
        var unit = 0
        while value >= 1024, unit < Self.units.count - 1 {
            value /= 1024
            unit += 1
        }
        // One decimal, rounded half up; 1023.95 KiB shows as 1.0 MiB rather than 1024.0 KiB.
        var tenths = (value * 10).rounded()
        if tenths >= 10240, unit < Self.units.count - 1 {
            tenths = (value / 1024 * 10).rounded()
            unit += 1
        }
        let sign = bytes < 0 ? "-" : ""
        return "\(sign)\(Int(tenths) / 10).\(Int(tenths) % 10) \(Self.units[unit])"
    }

    public static func string(_ bytes: Int) -> String { self.string(Int64(bytes)) }

    /// A rate: `50.0 MiB/s`.
    public static func rate(_ bytesPerSecond: Int64) -> String { self.string(bytesPerSecond) + "/s" }
}
