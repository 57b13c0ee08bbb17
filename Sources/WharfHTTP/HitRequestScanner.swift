/// What ``HitPath`` needs of a request to answer it as a cache hit.
struct HitRequest {
    var isHead: Bool
    var uri: String
    var keepAlive: Bool
    /// A header that only the async side handles (`Range`, `Authorization`).
    var needsAsync: Bool
    var accept: [String]
    var ifNoneMatch: [String]
    /// The first `User-Agent`, read only for the access log.
    var userAgent: String?
}

/// Reads a request head straight from the connection's bytes, so a cache hit skips NIO's HTTP
/// decoder (llhttp, `HTTPRequestHead`, `HTTPHeaders`: about a fifth of a small hit's CPU).
///
/// Strict by design: only a complete, bodyless `GET`/`HEAD` in HTTP/1.1 with well-formed header
/// lines is taken (``Scan/request(_:length:)``). Anything else (`HTTP/1.0`, a body, `Upgrade`,
/// `Expect`, obs-fold, control bytes, oversize heads) is ``Scan/other``: the connection goes to
/// NIO's decoder, which answers errors as before.
enum HitRequestScanner {
    enum Scan {
        /// No end of head yet, and still under the size limit.
        case incomplete
        /// A complete head of `length` bytes, followed by no body.
        case request(HitRequest, length: Int)
        case other
    }

    /// `searchedTo`: how many bytes an earlier scan of the same, shorter head already searched for its
    /// end (a head arriving in pieces is not searched from the start again). `userAgent`: read the
    /// `User-Agent` (for the access log; skipped when nothing logs requests).
    static func scan(_ bytes: UnsafeRawBufferPointer, maxHeadBytes: Int, searchedTo: Int = 0, userAgent: Bool = false) -> Scan {
        let found = self.endOfHead(bytes, limit: maxHeadBytes, from: searchedTo)
        if found == -1 { return .other }
        guard let end = found else {
            // Waiting is only for a GET or HEAD still arriving: anything else (a TLS hello sent to
            // the plain port, another method) goes to the decoder now, which answers at once.
            return bytes.count > maxHeadBytes || !(self.isPrefix(bytes, of: "GET ") || self.isPrefix(bytes, of: "HEAD ")) ? .other : .incomplete
        }
        var i = 0
        // Request line: GET|HEAD SP target SP HTTP/1.1 CRLF
        let isHead: Bool
        if self.matches(bytes, at: 0, "GET ") { isHead = false; i = 4 } else if self.matches(bytes, at: 0, "HEAD ") { isHead = true; i = 5 } else { return .other }
        let targetStart = i
        while i < end, bytes[i] > 0x20, bytes[i] < 0x7F { i += 1 }
        guard i > targetStart, bytes[targetStart] == UInt8(ascii: "/"), self.matches(bytes, at: i, " HTTP/1.1\r\n") else { return .other }
        var request = HitRequest(
            isHead: isHead, uri: String(decoding: UnsafeRawBufferPointer(rebasing: bytes[targetStart..<i]), as: UTF8.self),
            keepAlive: true, needsAsync: false, accept: [], ifNoneMatch: [])
        i += 11
        var fields = 0
        // Header lines: name ":" OWS value OWS CRLF, until the empty line.
        while i < end {
            fields += 1
            guard fields <= 256 else { return .other }
            let nameStart = i
            while i < end, Self.isTokenByte(bytes[i]) { i += 1 }
            guard i > nameStart, i < end, bytes[i] == UInt8(ascii: ":") else { return .other }
            let name = UnsafeRawBufferPointer(rebasing: bytes[nameStart..<i])
            i += 1
            while i < end, bytes[i] == 0x20 || bytes[i] == 0x09 { i += 1 }
            let valueStart = i
            while i < end, bytes[i] != 0x0D {
                guard bytes[i] >= 0x20 && bytes[i] != 0x7F || bytes[i] == 0x09 else { return .other }
                i += 1
            }
            guard i + 1 < bytes.count, bytes[i] == 0x0D, bytes[i + 1] == 0x0A else { return .other }
            // Trailing whitespace stays in the value, as NIO's decoder (llhttp) keeps it: the hit path
            // must read the same values as the async side (found by ScannerDifferentialTests).
            let value = UnsafeRawBufferPointer(rebasing: bytes[valueStart..<i])
            i += 2
            switch self.field(name) {
            case .ignored: break
            case .refused: return .other
            case .async: request.needsAsync = true
            case .connection:
                // llhttp reads a Connection value with a tab after its start as neither close nor keep-alive
                // ("close\t" keeps the connection open there): leave such odd values to the decoder.
                if value.contains(0x09) { return .other }
                for token in value.split(separator: UInt8(ascii: ",")) {
                    let isSpace = { (b: UInt8) in b == 0x20 || b == 0x09 }
                    let t = token.drop(while: isSpace).reversed().drop(while: isSpace)
                    if self.equalsLowercased(t.reversed(), "close") { request.keepAlive = false }
                    if self.equalsLowercased(t.reversed(), "upgrade") { return .other }
                }
            case .accept: request.accept.append(String(decoding: value, as: UTF8.self))
            case .ifNoneMatch: request.ifNoneMatch.append(String(decoding: value, as: UTF8.self))
            case .userAgent: if userAgent, request.userAgent == nil { request.userAgent = String(decoding: value, as: UTF8.self) }
            }
        }
        return .request(request, length: end + 2)
    }

    // MARK: Bytes

    /// The index of the CRLF that ends the empty line (the head is `[0, result + 2)`), or nil while
    /// there is none in the first `limit` bytes (so a head is taken only if it is at most `limit`
    /// bytes long, whether it arrives whole or in pieces). A bare LF (one without its CR) anywhere
    /// gives -1: such a head goes to the decoder, which answers it, instead of waiting for a CRLFCRLF
    /// that never comes.
    private static func endOfHead(_ bytes: UnsafeRawBufferPointer, limit: Int, from searched: Int) -> Int? {
        let count = min(bytes.count, limit)
        var i = max(1, searched)
        while i < count {
            if bytes[i] == 0x0A {
                guard bytes[i - 1] == 0x0D else { return -1 }
                if i >= 3, bytes[i - 2] == 0x0A, bytes[i - 3] == 0x0D { return i - 1 }
            }
            i += 1
        }
        return nil
    }

    private enum Field { case ignored, refused, async, connection, accept, ifNoneMatch, userAgent }

    private static func field(_ name: UnsafeRawBufferPointer) -> Field {
        switch name.count {
        case 5: if self.equalsLowercased(name, "range") { return .async }
        case 6:
            if self.equalsLowercased(name, "accept") { return .accept }
            if self.equalsLowercased(name, "expect") { return .refused }
        case 7: if self.equalsLowercased(name, "upgrade") { return .refused }
        case 10:
            if self.equalsLowercased(name, "connection") { return .connection }
            if self.equalsLowercased(name, "user-agent") { return .userAgent }
        case 13:
            if self.equalsLowercased(name, "authorization") { return .async }
            if self.equalsLowercased(name, "if-none-match") { return .ifNoneMatch }
        case 14: if self.equalsLowercased(name, "content-length") { return .refused }
        case 17: if self.equalsLowercased(name, "transfer-encoding") { return .refused }
        default: break
        }
        return .ignored
    }

    private static func matches(_ bytes: UnsafeRawBufferPointer, at offset: Int, _ literal: StaticString) -> Bool {
        let n = literal.utf8CodeUnitCount
        guard offset + n <= bytes.count else { return false }
        return literal.withUTF8Buffer { lit in (0..<n).allSatisfy { bytes[offset + $0] == lit[$0] } }
    }

    /// True if `bytes` starts with `literal`, or with as much of it as there are bytes.
    private static func isPrefix(_ bytes: UnsafeRawBufferPointer, of literal: StaticString) -> Bool {
        let n = min(bytes.count, literal.utf8CodeUnitCount)
        return literal.withUTF8Buffer { lit in (0..<n).allSatisfy { bytes[$0] == lit[$0] } }
    }

    /// ASCII case-insensitive comparison with a lowercase literal.
    private static func equalsLowercased(_ bytes: some Collection<UInt8>, _ literal: StaticString) -> Bool {
        guard bytes.count == literal.utf8CodeUnitCount else { return false }
        return literal.withUTF8Buffer { lit in
            zip(bytes, lit).allSatisfy { b, l in (b >= 0x41 && b <= 0x5A ? b | 0x20 : b) == l }
        }
    }

    /// RFC 9110 token characters.
    private static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
             UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
             UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"): true
        default: false
        }
    }
}
