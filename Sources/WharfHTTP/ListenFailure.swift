#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// A listen address that could not be bound: the address, why, and what to do about it.
public struct ListenFailure: Error, Sendable, CustomStringConvertible {
    /// `HOST:PORT` as configured.
    public let address: String
    public let reason: String

    public init(address: String, reason: String) {
        self.address = address
        self.reason = reason
    }

    /// From the `errno` of a failed `bind`/`listen`.
    public init(address: String, errno code: Int32) {
        self.init(address: address, reason: Self.reason(errno: code, address: address))
    }

    /// From whatever NIO threw while binding (an `IOError` carries the `errno`).
    public init(address: String, error: any Error) {
        if let io = error as? IOError {
            self.init(address: address, errno: io.errnoCode)
        } else {
            self.init(address: address, reason: "\(error)")
        }
    }

    public var description: String { "cannot listen on \(self.address): \(self.reason)" }

    /// `HOST:PORT`, with brackets around an IPv6 host.
    public static func address(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    static func reason(errno code: Int32, address: String) -> String {
        let port = address.split(separator: ":").last.map(String.init) ?? "PORT"
        switch code {
        case EADDRINUSE:
            return """
                address already in use: another process (another Wharf?) listens there (`ss -ltnp 'sport = :\(port)'` shows which); \
                stop it, or listen on another address (--listen HOST:PORT, or 'listen' in the configuration file)
                """
        case EACCES:
            return "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE; listen on a port from 1024 up"
        case EADDRNOTAVAIL:
            return "no interface of this machine has that address; listen on 0.0.0.0 (every interface) or one of its own addresses"
        default:
            return String(cString: strerror(code))
        }
    }
}
