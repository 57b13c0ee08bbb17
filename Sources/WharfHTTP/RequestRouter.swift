import NIOHTTP1
import OCIDistribution

/// A parsed request target of the distribution API. Names and references are still raw here;
/// handlers validate them into typed values.
enum Route: Equatable {
    case base
    case manifest(name: String, reference: String)
    case blob(name: String, digest: String)
    case blobUpload(name: String)
    case tags(name: String)
    case referrers(name: String, digest: String)
    case catalog
    case status(StatusPage)
    case notFound
}

/// Wharf's own pages, outside the distribution API.
enum StatusPage: String, Equatable {
    case ping = "/_ping", healthz = "/healthz", readyz = "/readyz", stats = "/stats", metrics = "/metrics", dashboard = "/"
}

/// The request line split into a route and its query parameters.
struct ParsedTarget {
    let route: Route
    let query: [(String, String)]

    func queryValue(_ name: String) -> String? { self.query.first { $0.0 == name }?.1 }
}

enum RequestRouter {
    static let maxURILength = 8192

    /// Matches from the right, because names contain `/`: `…/manifests/<ref>`, `…/blobs/<digest>`, `…/tags/list`.
    static func parse(uri: String) throws(RegistryError) -> ParsedTarget {
        guard uri.utf8.count <= maxURILength else { throw RegistryError(.nameInvalid, "request URI too long", status: 414) }
        let pathPart: Substring
        var query: [(String, String)] = []
        if let q = uri.firstIndex(of: "?") {
            pathPart = uri[..<q]
            query = try Self.parseQuery(uri[uri.index(after: q)...])
        } else {
            pathPart = Substring(uri)
        }
        guard pathPart.hasPrefix("/") else { throw RegistryError(.nameInvalid, "request target must be an absolute path", status: 400) }
        if let page = StatusPage(rawValue: String(pathPart)) ?? (pathPart == "/dashboard" ? .dashboard : nil) {
            return ParsedTarget(route: .status(page), query: query)
        }
        if pathPart == "/v2" || pathPart == "/v2/" { return ParsedTarget(route: .base, query: query) }
        guard pathPart.hasPrefix("/v2/") else { return ParsedTarget(route: .notFound, query: query) }
        var parts = pathPart.dropFirst(4).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if parts.last == "" { parts.removeLast() }
        if parts == ["_catalog"] { return ParsedTarget(route: .catalog, query: query) }
        guard parts.count >= 3 else { return ParsedTarget(route: .notFound, query: query) }
        let n = parts.count
        let name = { (drop: Int) in parts[0..<(n - drop)].joined(separator: "/") }
        if parts[n - 2] == "tags", parts[n - 1] == "list" { return ParsedTarget(route: .tags(name: name(2)), query: query) }
        if parts[n - 2] == "blobs", parts[n - 1] == "uploads" { return ParsedTarget(route: .blobUpload(name: name(2)), query: query) }
        if n >= 4, parts[n - 3] == "blobs", parts[n - 2] == "uploads" { return ParsedTarget(route: .blobUpload(name: name(3)), query: query) }
        switch parts[n - 2] {
        case "manifests": return ParsedTarget(route: .manifest(name: name(2), reference: parts[n - 1]), query: query)
        case "blobs": return ParsedTarget(route: .blob(name: name(2), digest: parts[n - 1]), query: query)
        case "referrers": return ParsedTarget(route: .referrers(name: name(2), digest: parts[n - 1]), query: query)
        default: return ParsedTarget(route: .notFound, query: query)
        }
    }

    static func parseQuery(_ raw: Substring) throws(RegistryError) -> [(String, String)] {
        var out: [(String, String)] = []
        for pair in raw.split(separator: "&") {
            guard out.count < 32 else { throw RegistryError(.requestInvalid, "too many query parameters") }
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = percentDecode(kv[0]), let value = percentDecode(kv.count > 1 ? kv[1] : "") else {
                throw RegistryError(.requestInvalid, "malformed query string")
            }
            out.append((key, value))
        }
        return out
    }

    static func percentDecode(_ s: Substring) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(s.utf8.count)
        var it = s.utf8.makeIterator()
        while let c = it.next() {
            if c == UInt8(ascii: "+") { bytes.append(0x20); continue }
            guard c == UInt8(ascii: "%") else { bytes.append(c); continue }
            guard let h = it.next(), let l = it.next(), let hv = hexValue(h), let lv = hexValue(l) else { return nil }
            bytes.append(hv << 4 | lv)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    static func percentEncode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            let c = Character(UnicodeScalar(b))
            if c.isASCII, c.isLetter || c.isNumber || "-._~".contains(c) { out.append(c) } else {
                out += "%" + String(b, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x41...0x46: c - 0x41 + 10
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }
}

extension String {
    func leftPadded(to n: Int) -> String { String(repeating: "0", count: max(0, n - self.count)) + self }
}
