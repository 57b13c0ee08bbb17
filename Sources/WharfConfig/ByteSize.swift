/// Parses sizes: plain bytes (`1048576`) or a number and a unit (`512MiB`, `1.5 TB`).
///
/// Units (case-insensitive): `B`, `KB` `MB` `GB` `TB` (powers of 1000), `KiB` `MiB` `GiB` `TiB`
/// (powers of 1024). A fractional number is rounded down to whole bytes.
public enum ByteSize {
    static let units: [(suffix: String, factor: Int64)] = [
        ("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("tib", 1 << 40),
        ("kb", 1_000), ("mb", 1_000_000), ("gb", 1_000_000_000), ("tb", 1_000_000_000_000), ("b", 1),
    ]

    /// The size in bytes, or `nil` when `s` is not a size or does not fit in 63 bits.
    public static func parse(_ s: String) -> Int64? {
        let text = s.trimmingSpaces.lowercased()
        let number = text.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
        let unit = text.dropFirst(number.count).trimmingSpaces
        let factor: Int64
        if unit.isEmpty {
            factor = 1
        } else if let match = self.units.first(where: { $0.suffix == unit }) {
            factor = match.factor
        } else {
            return nil
        }
        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, parts.count <= 2, parts.last?.isEmpty == false else { return nil }
        guard parts.count == 1 || !unit.isEmpty else { return nil }
        guard let integer = Int64(whole) else { return nil }
        let (product, overflow) = integer.multipliedReportingOverflow(by: factor)
        guard !overflow else { return nil }
        guard parts.count == 2, let fraction = Double("0." + parts[1]) else { return product }
        let extra = (fraction * Double(factor)).rounded(.down)
        guard Double(product) + extra < Double(Int64.max) else { return nil }
        return product + Int64(extra)
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (no Foundation needed).
    var trimmingSpaces: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let start = self.firstIndex(where: { !isSpace($0) }), let end = self.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[start...end])
    }
}
