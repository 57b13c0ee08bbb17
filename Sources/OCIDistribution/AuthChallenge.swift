/// One challenge from a `WWW-Authenticate` header (RFC 7235), e.g. `Bearer realm="…",service="…"`.
public struct AuthChallenge: Sendable, Hashable {
    /// Lowercased scheme: `bearer`, `basic`, …
    public let scheme: String
    /// Parameters with lowercased names and unquoted values.
    public let parameters: [String: String]

    public var realm: String? { self.parameters["realm"] }
    public var service: String? { self.parameters["service"] }
    /// Space-separated scopes from the `scope` parameter.
    public var scopes: [String] { (self.parameters["scope"] ?? "").split(separator: " ").map(String.init) }
    public var error: String? { self.parameters["error"] }

    public init(scheme: String, parameters: [String: String]) {
        self.scheme = scheme.lowercased()
        self.parameters = parameters
    }

    /// Parses every challenge in every given header value. Malformed pieces are skipped, never fatal.
    public static func parse(headers: [String]) -> [AuthChallenge] {
        headers.flatMap { parse($0) }
    }

    public static func parse(_ header: String) -> [AuthChallenge] {
        var result: [AuthChallenge] = []
        var scanner = Scanner(Array(header.utf8.prefix(16384)))
        var scheme: String?
        var params: [String: String] = [:]
        func flush() {
            if let s = scheme { result.append(AuthChallenge(scheme: s, parameters: params)) }
            scheme = nil
            params = [:]
        }
        while true {
            scanner.skip { $0 == 0x20 || $0 == 0x09 || $0 == 0x2C }
            guard !scanner.atEnd else { break }
            let token = scanner.token()
            if token.isEmpty { scanner.advance(); continue }
            scanner.skip { $0 == 0x20 || $0 == 0x09 }
            if scanner.peek == 0x3D, scheme != nil {  // name=value
                scanner.advance()
                scanner.skip { $0 == 0x20 || $0 == 0x09 }
                let value = scanner.peek == 0x22 ? scanner.quoted() : scanner.token()
                params[token.lowercased()] = value
            } else if scanner.peek == 0x3D {  // token68 or junk without a scheme
                scanner.skip { $0 != 0x2C }
            } else {
                flush()
                scheme = token
            }
        }
        flush()
        return result
    }

    private struct Scanner {
        let bytes: [UInt8]
        var i = 0
        init(_ b: [UInt8]) { self.bytes = b }
        var atEnd: Bool { self.i >= self.bytes.count }
        var peek: UInt8? { self.atEnd ? nil : self.bytes[self.i] }
        mutating func advance() { self.i += 1 }
        mutating func skip(while p: (UInt8) -> Bool) {
            while let c = self.peek, p(c) { self.i += 1 }
        }
        mutating func token() -> String {
            let start = self.i
            self.skip { $0 != 0x20 && $0 != 0x09 && $0 != 0x2C && $0 != 0x3D && $0 != 0x22 }
            return String(decoding: self.bytes[start..<self.i], as: UTF8.self)
        }
        mutating func quoted() -> String {
            self.advance()  // opening quote
            var out: [UInt8] = []
            while let c = self.peek {
                self.advance()
                if c == 0x5C, let n = self.peek { out.append(n); self.advance(); continue }
                if c == 0x22 { break }
                out.append(c)
            }
            return String(decoding: out, as: UTF8.self)
        }
    }
}
