#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The kind of network an address belongs to, for deciding where an upstream may redirect Wharf.
public enum NetworkClass: String, Sendable, Hashable {
    /// `127.0.0.0/8`, `::1`, and the unspecified `0.0.0.0/8` / `::` (which reach the local host on Linux).
    case loopback
    /// `10/8`, `172.16/12`, `192.168/16`, `100.64/10` (CGNAT), `fc00::/7`, multicast and reserved ranges.
    case privateNetwork = "private"
    /// `169.254/16` (cloud metadata services live here), `fe80::/10`.
    case linkLocal = "link-local"
    /// Everything else.
    case `public`
}

/// An IPv4 or IPv6 address (4 or 16 bytes).
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// Parses a numeric address (`127.0.0.1`, `::1`, `[::1]`); nil for a host name.
    public init?(_ text: String) {
        var s = text
        if s.hasPrefix("["), s.hasSuffix("]") { s = String(s.dropFirst().dropLast()) }
        var v4 = in_addr()
        if inet_pton(AF_INET, s, &v4) == 1 {
            self.bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, s, &v6) == 1 {
            self.bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        return nil
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    public var description: String {
        if self.bytes.count == 4 { return self.bytes.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: 16, by: 2).map { String(UInt16(self.bytes[$0]) << 8 | UInt16(self.bytes[$0 + 1]), radix: 16) }
            .joined(separator: ":")
    }

    public var networkClass: NetworkClass {
        if self.bytes.count == 4 { return Self.classify(v4: self.bytes) }
        let b = self.bytes
        // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) carry an IPv4 address.
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff { return Self.classify(v4: Array(b[12...])) }
        if b[0..<12].allSatisfy({ $0 == 0 }) {
            return b[12..<15].allSatisfy({ $0 == 0 }) && b[15] <= 1 ? .loopback : Self.classify(v4: Array(b[12...]))
        }
        if b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4..<12].allSatisfy({ $0 == 0 }) {
            return Self.classify(v4: Array(b[12...]))
        }
        if b[0] == 0xfe && b[1] & 0xc0 == 0x80 { return .linkLocal }
        if b[0] & 0xfe == 0xfc || b[0] == 0xff || b[0] == 0xfe { return .privateNetwork }  // ULA, multicast, site-local
        return .public
    }

    private static func classify(v4 b: [UInt8]) -> NetworkClass {
        switch (b[0], b[1]) {
        case (127, _), (0, _): return .loopback
        case (169, 254): return .linkLocal
        case (10, _), (192, 168), (172, 16...31), (100, 64...127), (198, 18...19): return .privateNetwork
        case (224..., _): return .privateNetwork  // multicast, reserved, broadcast
        case (192, 0) where b[2] == 0: return .privateNetwork  // IETF protocol assignments
        default: return .public
        }
    }
}
