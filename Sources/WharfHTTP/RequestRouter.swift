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
    /// `/admin/<action>`: the admin API (``AdminEndpoint``).
    case admin(String)
    case notFound
}

/// Wharf's own pages, outside the distribution API.
enum StatusPage: String, Equatable {
    case ping = "/_ping", healthz = "/healthz", readyz = "/readyz", stats = "/stats", metrics = "/metrics", dashboard = "/"
    case cacheBrowser = "/ui/cache", cacheImage = "/ui/cache/image", favicon = "/favicon.ico"

    /// Pages that name repositories: shown with names to those who may see them.
    var namesRepositories: Bool { [.stats, .dashboard, .cacheBrowser, .cacheImage].contains(self) }
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
        if uri.utf8.first != UInt8(ascii: "/"), let origin = Self.originFormOfAbsolute(uri) { return try Self.parse(uri: origin) }
        // Works on the path's bytes: this runs for every request, hits included.
        var raw = uri
        let (path0, questionMark) = raw.withUTF8 { bytes -> ([UInt8], Int?) in
            let q = bytes.firstIndex(of: UInt8(ascii: "?"))
            return (Array(UnsafeBufferPointer(rebasing: bytes[..<(q ?? bytes.count)])), q)
        }
        var path = path0
        var query: [(String, String)] = []
        let pathPart: Substring
        if let questionMark {
            let q = uri.utf8.index(uri.utf8.startIndex, offsetBy: questionMark)
            pathPart = uri[..<q]
            query = try Self.parseQuery(uri[uri.utf8.index(after: q)...])
        } else {
            pathPart = Substring(uri)
        }
        guard path.first == UInt8(ascii: "/") else { throw RegistryError(.nameInvalid, "request target must be an absolute path", status: 400) }
        // A mirror path before `/v2/` (Docker ≥ 25 and containerd: `https://m/dockerhub` → `/dockerhub/v2/…`)
        // is the same as a prefix after it (podman: `/v2/dockerhub/…`).
        if !path.starts(with: Self.v2Prefix), let v2 = Self.innerV2(path) {
            let prefix = path[1..<v2]
            let rest = path[(v2 + 3)...].drop { $0 == UInt8(ascii: "/") }
            path = Self.v2Prefix + prefix + (rest.isEmpty ? [] : [UInt8(ascii: "/")] + rest)
            if rest.isEmpty { return ParsedTarget(route: .base, query: query) }
        }
        guard path.starts(with: Self.v2Prefix) else {
            if path == Self.v2Root { return ParsedTarget(route: .base, query: query) }
            if pathPart.hasPrefix("/admin/") { return ParsedTarget(route: .admin(String(pathPart.dropFirst(7))), query: query) }
            if let page = StatusPage(rawValue: String(pathPart)) ?? (pathPart == "/dashboard" ? .dashboard : nil) {
                return ParsedTarget(route: .status(page), query: query)
            }
            return ParsedTarget(route: .notFound, query: query)
        }
        path.removeFirst(4)
        if path.last == UInt8(ascii: "/") { path.removeLast() }
        if path.isEmpty { return ParsedTarget(route: .base, query: query) }
        if path.elementsEqual("_catalog".utf8) { return ParsedTarget(route: .catalog, query: query) }
        // The last three slashes split off `…/<kind>/<ref>` (and `…/blobs/uploads/<id>`).
        let slash = UInt8(ascii: "/")
        guard let s1 = path.lastIndex(of: slash), let s2 = path[..<s1].lastIndex(of: slash) else {
            return ParsedTarget(route: .notFound, query: query)
        }
        let last = path[(s1 + 1)...], kind = path[(s2 + 1)..<s1]
        let text = { (bytes: ArraySlice<UInt8>) in String(decoding: bytes, as: UTF8.self) }
        let name = text(path[..<s2])
        if kind.elementsEqual("tags".utf8), last.elementsEqual("list".utf8) { return ParsedTarget(route: .tags(name: name), query: query) }
        if kind.elementsEqual("blobs".utf8), last.elementsEqual("uploads".utf8) { return ParsedTarget(route: .blobUpload(name: name), query: query) }
        if kind.elementsEqual("uploads".utf8), let s3 = path[..<s2].lastIndex(of: slash), path[(s3 + 1)..<s2].elementsEqual("blobs".utf8) {
            return ParsedTarget(route: .blobUpload(name: text(path[..<s3])), query: query)
        }
        if kind.elementsEqual("manifests".utf8) { return ParsedTarget(route: .manifest(name: name, reference: text(last)), query: query) }
        if kind.elementsEqual("blobs".utf8) { return ParsedTarget(route: .blob(name: name, digest: text(last)), query: query) }
        if kind.elementsEqual("referrers".utf8) { return ParsedTarget(route: .referrers(name: name, digest: text(last)), query: query) }
        return ParsedTarget(route: .notFound, query: query)
    }

    private static let v2Prefix = Array("/v2/".utf8)

    /// Where `/v2` starts as a whole path component after a mirror path (`/x/y/v2/…` or `/x/v2`), if it does.
    private static func innerV2(_ path: [UInt8]) -> Int? {
        let slash = UInt8(ascii: "/")
        var i = 1
        while i + 3 <= path.count {
            if path[i - 1] == slash, path[i] == UInt8(ascii: "v"), path[i + 1] == UInt8(ascii: "2"),
               i + 2 == path.count || path[i + 2] == slash {
                return i > 1 ? i - 1 : nil
            }
            i += 1
        }
        return nil
    }
    private static let v2Root = Array("/v2".utf8)

    /// `http://host[:port]/path?query` → `/path?query` (a server must accept the absolute form, RFC 9112
    /// §3.2.2; the authority is not used: a mirror answers for its upstreams whatever `Host` says).
    /// Nil for anything else, which then fails as a target that is not a path.
    static func originFormOfAbsolute(_ uri: String) -> String? {
        let lower = uri.prefix(8).lowercased()
        let schemeEnd = lower.hasPrefix("http://") ? 7 : lower.hasPrefix("https://") ? 8 : nil
        guard let schemeEnd else { return nil }
        let afterScheme = uri.utf8.dropFirst(schemeEnd)
        guard let slash = afterScheme.firstIndex(of: UInt8(ascii: "/")), slash > afterScheme.startIndex,
              !afterScheme[..<slash].contains(where: { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "@") })
        else { return nil }
        return String(uri[slash...])
    }

    /// containerd's `ns` parameter (a registry host, `docker.io` or `registry.example:5000`), or nil
    /// when there is none. A malformed one is refused, never routed to the default upstream.
    static func namespace(of target: ParsedTarget) throws(RegistryError) -> String? {
        guard let ns = target.queryValue("ns") else { return nil }
        guard !ns.isEmpty, ns.utf8.count <= 255, ns.utf8.allSatisfy(Self.isHostByte) else {
            throw RegistryError(.nameInvalid, "the ns parameter is not a registry host name")
        }
        return ns
    }

    /// Letters, digits and `.-_:[]` (a host name, an IPv6 literal, a port).
    private static func isHostByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "["), UInt8(ascii: "]"):
            return true
        default:
            return false
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
