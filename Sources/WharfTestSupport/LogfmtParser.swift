/// A logfmt reader with go-logfmt's rules: `key=value` pairs separated by spaces, a value either bare
/// (no space, `=` or `"`) or double-quoted with `\"`, `\\`, `\n`, `\r`, `\t` and `\u` with four hex digits.
/// Throws on anything else (a raw control character, an unterminated quote, a stray `"`). For tests of
/// Wharf's log lines (written independently of the writer in WharfLogging).
public enum LogfmtParser {
    public struct Malformed: Error, CustomStringConvertible {
        public let description: String
    }

    public static func parse(_ line: String) throws -> [(String, String)] {
        var fields: [(String, String)] = []
        let s = Array(line.unicodeScalars)
        var i = 0
        func fail(_ why: String) -> Malformed { Malformed(description: "\(why) at \(i) in \(line.debugDescription)") }
        while i < s.count {
            while i < s.count, s[i] == " " { i += 1 }
            guard i < s.count else { break }
            var key = ""
            while i < s.count, s[i] != "=", s[i] != " " {
                guard s[i].value > 0x20, s[i] != "\"" else { throw fail("bad key character") }
                key.unicodeScalars.append(s[i])
                i += 1
            }
            guard !key.isEmpty, i < s.count, s[i] == "=" else { throw fail("key without value") }
            i += 1
            var value = ""
            if i < s.count, s[i] == "\"" {
                i += 1
                var closed = false
                while i < s.count {
                    let c = s[i]
                    i += 1
                    if c == "\"" { closed = true; break }
                    guard c.value >= 0x20 else { throw fail("raw control character in a quoted value") }
                    guard c == "\\" else { value.unicodeScalars.append(c); continue }
                    guard i < s.count else { throw fail("escape at the end") }
                    let e = s[i]
                    i += 1
                    switch e {
                    case "\"": value += "\""
                    case "\\": value += "\\"
                    case "n": value += "\n"
                    case "r": value += "\r"
                    case "t": value += "\t"
                    case "u":
                        guard i + 4 <= s.count, let code = UInt32(String(String.UnicodeScalarView(s[i..<(i + 4)])), radix: 16),
                              let scalar = Unicode.Scalar(code)
                        else { throw fail("bad \\u escape") }
                        value.unicodeScalars.append(scalar)
                        i += 4
                    default: throw fail("unknown escape \\\(e)")
                    }
                }
                guard closed else { throw fail("unterminated quote") }
                guard i == s.count || s[i] == " " else { throw fail("text after a closing quote") }
            } else {
                while i < s.count, s[i] != " " {
                    guard s[i].value > 0x20, s[i] != "\"", s[i] != "=" else { throw fail("bad bare value character") }
                    value.unicodeScalars.append(s[i])
                    i += 1
                }
            }
            fields.append((key, value))
        }
        return fields
    }
}
