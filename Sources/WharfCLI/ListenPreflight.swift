#if canImport(Glibc)
import Glibc
#endif
import WharfConfig
import WharfHTTP

/// Binds each listen address once and lets it go again, before `wharf serve` creates or locks its
/// data folder: an address in use (or a privileged port, or an address this machine does not have)
/// then stops the start with a message naming the address, and nothing is left on disk.
///
/// The real bind comes a moment later and can still lose a race for the port; it fails with the same
/// ``ListenFailure`` (the data folder exists by then).
enum ListenPreflight {
    static func check(_ listeners: [ListenerConfiguration]) throws {
        for listener in listeners where listener.port != 0 {
            if let failure = Self.bindOnce(listener) { throw failure }
        }
    }

    /// nil when the address can be bound now (or the check itself cannot run: the real bind will tell).
    private static func bindOnce(_ listener: ListenerConfiguration) -> ListenFailure? {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var found: UnsafeMutablePointer<addrinfo>?
        let resolved = getaddrinfo(listener.host, String(listener.port), &hints, &found)
        guard resolved == 0, let first = found else {
            return ListenFailure(
                address: listener.address, reason: "cannot resolve '\(listener.host)': \(String(cString: gai_strerror(resolved))); use an IP address or a host name of this machine")
        }
        defer { freeaddrinfo(found) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))  // as the server does
        guard bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else { return ListenFailure(address: listener.address, errno: errno) }
        return nil
    }
}
