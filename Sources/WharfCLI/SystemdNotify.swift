#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import ServiceLifecycle
import WharfHTTP
import WharfMirror

/// systemd's service notification protocol (`sd_notify`) without libsystemd: datagrams to the socket
/// in `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). Does nothing when the variable
/// is unset, so the same binary runs under `Type=notify`, `Type=exec` and outside systemd.
struct SystemdNotifier: Sendable {
    let socketPath: String?

    init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.socketPath = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
    }

    var enabled: Bool { self.socketPath != nil }

    /// Sends one notification (`READY=1`, `STOPPING=1`, `WATCHDOG=1`, `STATUS=…`); false if it could not.
    @discardableResult
    func notify(_ state: String) -> Bool {
        guard let path = self.socketPath else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract namespace
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in raw.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
        return sent == message.count
    }

    /// Half of `$WATCHDOG_USEC` (systemd's advice), when the watchdog is on for this process.
    static func watchdogInterval(environment: [String: String] = ProcessInfo.processInfo.environment) -> Duration? {
        guard let raw = environment["WATCHDOG_USEC"], let usec = UInt64(raw), usec > 0 else { return nil }
        if let pid = environment["WATCHDOG_PID"], let p = Int32(pid), p != getpid() { return nil }
        return .microseconds(Int64(usec / 2))
    }
}

/// Tells systemd when Wharf is ready (every listener bound), pets the watchdog while the mirror is
/// ready (index answers, data folder writable), and says when it is stopping.
struct SystemdService: Service {
    let notifier: SystemdNotifier
    let servers: [RegistryServer]
    let mirror: Mirror
    let logger: Logger

    func run() async throws {
        guard self.notifier.enabled else { return }
        for server in self.servers { _ = try await server.boundPort() }
        self.notifier.notify("READY=1\nSTATUS=serving")
        self.logger.info("told systemd: ready")
        let interval = SystemdNotifier.watchdogInterval()
        await cancelWhenGracefulShutdown {
            guard let interval else {
                while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
                return
            }
            while !Task.isCancelled {
                // A mirror that cannot read its index or write its folder stops petting: systemd restarts it.
                if let problem = self.mirror.readinessProblem() {
                    self.notifier.notify("STATUS=not ready: \(problem)")
                } else {
                    self.notifier.notify("WATCHDOG=1")
                }
                try? await Task.sleep(for: interval)
            }
        }
        self.notifier.notify("STOPPING=1")
    }
}
