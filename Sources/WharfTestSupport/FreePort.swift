#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Finds TCP ports on the loopback interface that are free right now.
///
/// The port is found by binding `127.0.0.1:0`, reading the port the kernel chose and
/// closing the socket again. Another process may grab the port before the caller binds
/// it, so callers that spawn servers on it should retry on "address in use".
public enum FreePort {
    /// Returns a TCP port on 127.0.0.1 that was free at the time of the call.
    public static func loopback() throws -> Int {
        #if canImport(Glibc) || canImport(Musl)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw FixtureError.system("socket", errno) }
        defer { close(fd) }

        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw FixtureError.system("bind", errno) }

        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getsockname(fd, $0, &length)
            }
        }
        guard named == 0 else { throw FixtureError.system("getsockname", errno) }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
