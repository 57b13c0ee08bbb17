/// Parses durations: whole seconds (`300`) or hours, minutes and seconds (`90s`, `5m`, `1h30m`).
public enum DurationString {
    /// The duration in seconds, or `nil` when `s` is not a duration.
    ///
    /// Units `h`, `m`, `s` may each appear once, in that order; each needs a whole number before it.
    public static func seconds(_ s: String) -> Int? {
        let text = s.trimmingSpaces
        guard !text.isEmpty else { return nil }
        if text.allSatisfy({ $0.isASCII && $0.isNumber }) { return Int(text) }
        var total = 0
        var digits = ""
        var allowed: [Character] = ["h", "m", "s"]
        for c in text {
            if c.isASCII, c.isNumber {
                digits.append(c)
                continue
            }
            guard let position = allowed.firstIndex(of: c), let value = Int(digits) else { return nil }
            let factor = c == "h" ? 3600 : c == "m" ? 60 : 1
            let (part, o1) = value.multipliedReportingOverflow(by: factor)
            let (sum, o2) = total.addingReportingOverflow(part)
            guard !o1, !o2 else { return nil }
            total = sum
            digits = ""
            allowed.removeFirst(position + 1)
        }
        return digits.isEmpty ? total : nil
    }
}
