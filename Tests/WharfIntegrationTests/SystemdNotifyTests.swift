import Foundation
import Testing
import WharfTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `Type=notify` and the watchdog: the real binary tells a socket standing in for systemd when it is
/// ready, pets the watchdog, and says when it stops.
@Suite(.serialized, .timeLimit(.minutes(2)), .tags(.integration))
struct SystemdNotifyTests {
    /// A bound Unix datagram socket at `path` with a 200 ms receive timeout.
    static func listen(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard fd >= 0, bound == 0 else { throw POSIXError(.EADDRINUSE) }
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    /// Datagrams received until `done` holds for them or `limit` passes.
    static func receive(_ fd: Int32, within limit: Duration, until done: ([String]) -> Bool) async -> [String] {
        var messages: [String] = []
        let deadline = ContinuousClock.now + limit
        var buffer = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline, !done(messages) {
            let n = await Task.detached { [buffer] in
                var b = buffer
                let n = b.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                return n > 0 ? String(decoding: b[0..<n], as: UTF8.self) : nil
            }.value
            if let n { messages.append(n) }
            buffer = [UInt8](repeating: 0, count: 4096)
        }
        return messages
    }

    @Test("READY=1 once listening, WATCHDOG=1 at half WATCHDOG_USEC, STOPPING=1 on SIGTERM")
    func notifies() async throws {
        let work = try TempDirectory.make("systemd")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let socketPath = work + "/notify"
        let fd = try Self.listen(socketPath)
        defer { close(fd) }
        let port = try FreePort.loopback()
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = socketPath
        environment["WATCHDOG_USEC"] = "400000"
        let child = try ChildProcess.spawn(
            executable: WharfProcess.executable,
            arguments: ["serve", "--listen", "127.0.0.1:\(port)", "--upstream", "http://127.0.0.1:1", "--data-dir", work + "/data"],
            environment: environment, outputPath: work + "/wharf.log")
        let ready = await Self.receive(fd, within: .seconds(20)) { $0.contains { $0.hasPrefix("READY=1") } }
        #expect(ready.contains { $0.hasPrefix("READY=1") }, "no READY=1: \(ready) \(child.output())")
        // Ready means listening.
        let health = try await RawHTTP.request("GET /healthz HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: port)
        #expect(health.status == 200)
        let pets = await Self.receive(fd, within: .seconds(5)) { $0.filter { $0 == "WATCHDOG=1" }.count >= 3 }
        #expect(pets.filter { $0 == "WATCHDOG=1" }.count >= 3, "the watchdog was not petted every 200 ms: \(pets)")
        child.signal(SIGTERM)
        let stopping = await Self.receive(fd, within: .seconds(10)) { $0.contains("STOPPING=1") }
        #expect(stopping.contains("STOPPING=1"), "\(stopping)")
        #expect(try await child.waitForExit(timeout: .seconds(15)) == 0)
    }
}
