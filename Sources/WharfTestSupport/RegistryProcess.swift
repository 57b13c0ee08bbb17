import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// One line of the registry's access log.
public struct RegistryAccessLogEntry: Sendable, Hashable {
    public let method: String
    /// The request target as logged (path and query).
    public let path: String
    public let status: Int
}

/// Runs the real CNCF Distribution registry (`/usr/bin/docker-registry`, 2.8) on
/// `127.0.0.1:<free port>` over a filesystem storage root, with token auth from a
/// ``TokenServer``.
///
/// The config (storage root, `http.addr`, `http.secret`, `auth.token` with the token
/// server's realm/service/issuer/certificate, info logging with the access log on,
/// deletes enabled, upload purging off, no blob-descriptor cache) is written when
/// ``start()`` runs, because the token server's port is only known once it is started:
/// start the token server first. ``stop()`` terminates the process (SIGTERM, then
/// SIGKILL) and deletes the config and the log.
///
/// Access-log lines are Apache combined format, written after each response completes:
/// `127.0.0.1 - - [22/Nov/2026:11:26:56 +0000] "GET /v2/ HTTP/1.1" 401 87 "" "curl/7.88.1"`.
public final class RegistryProcess: Sendable {
    public static let executable = "/usr/bin/docker-registry"

    /// The storage root the registry serves (`storage.filesystem.rootdirectory`).
    public let storageRoot: String
    private let tokenServer: TokenServer?

    private struct State {
        var port = 0
        var directory: String?
        var child: ChildProcess?
    }

    private let state = Mutex(State())

    /// - Parameter tokenServer: the token issuer the registry trusts; `nil` runs the
    ///   registry without authentication (then ``start()`` waits for a 200 from `/v2/`).
    public init(storageRoot: String, tokenServer: TokenServer?) {
        self.storageRoot = storageRoot
        self.tokenServer = tokenServer
    }

    public var port: Int { state.withLock { $0.port } }
    /// `http://127.0.0.1:PORT`.
    public var url: String { "http://127.0.0.1:\(port)" }
    /// File receiving the registry's stdout and stderr (logrus lines and the access log).
    /// Valid from ``start()`` until ``stop()``.
    public var logPath: String { (state.withLock { $0.directory } ?? "") + "/registry.log" }
    /// The process id, once started.
    public var pid: Int32? { state.withLock { $0.child?.pid } }

    /// Writes the config, starts the registry and waits (up to 20 s) until `GET /v2/`
    /// answers 401 (200 without a token server). Retries on a port collision.
    ///
    /// - Parameter port: listen on this port instead of a free one, e.g. the one of an earlier
    ///   run after ``stop()`` (to bring an upstream back at the same URL); a collision is then
    ///   retried on the same port after a short pause.
    public func start(port fixedPort: Int? = nil) async throws {
        if let tokenServer, tokenServer.port == 0 {
            throw FixtureError.state("start the TokenServer before the RegistryProcess")
        }
        try FileManager.default.createDirectory(atPath: storageRoot, withIntermediateDirectories: true)
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("wharf-registry-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        state.withLock { $0.directory = directory }

        var lastError: (any Error)?
        for attempt in 0..<3 {
            if fixedPort != nil, attempt > 0 { try await Task.sleep(for: .milliseconds(500)) }
            let port = try fixedPort ?? FreePort.loopback()
            let configPath = directory + "/config.yml"
            try config(port: port).write(toFile: configPath, atomically: true, encoding: .utf8)
            let child = try ChildProcess.spawn(
                executable: Self.executable, arguments: ["serve", configPath], outputPath: directory + "/registry.log")
            state.withLock {
                $0.port = port
                $0.child = child
            }
            do {
                try await waitUntilReady(child: child, port: port)
                return
            } catch {
                lastError = error
                await child.terminate(timeout: .seconds(2))
                let log = child.output()
                state.withLock { $0.child = nil }
                if !log.contains("address already in use") { break }
            }
        }
        throw lastError ?? FixtureError.process("registry did not start")
    }

    /// Terminates the registry (SIGTERM, SIGKILL after 5 s) and deletes its temp files.
    public func stop() async throws {
        let (child, directory) = state.withLock { state in
            defer {
                state.child = nil
                state.directory = nil
            }
            return (state.child, state.directory)
        }
        if let child { await child.terminate(timeout: .seconds(5)) }
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// The registry's combined log so far.
    public func log() -> String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Every access-log line so far, parsed.
    public func accessLog() throws -> [RegistryAccessLogEntry] {
        let text = try String(contentsOfFile: logPath, encoding: .utf8)
        return text.split(separator: "\n").compactMap(Self.parseAccessLine)
    }

    /// Number of access-log lines with this method whose request target contains
    /// `pathContaining`. The registry logs a request after its response completes, so
    /// allow a moment after the client finished before counting.
    public func requestCount(method: String, pathContaining: String) throws -> Int {
        try accessLog().filter { $0.method == method && $0.path.contains(pathContaining) }.count
    }

    /// Parses `HOST - USER [DATE] "METHOD TARGET PROTO" STATUS SIZE "REFERER" "AGENT"`.
    static func parseAccessLine(_ line: Substring) -> RegistryAccessLogEntry? {
        guard !line.hasPrefix("time="), let open = line.firstIndex(of: "["),
            let close = line[open...].firstIndex(of: "]")
        else { return nil }
        let rest = line[line.index(after: close)...].drop { $0 == " " }
        guard rest.first == "\"" else { return nil }
        let afterQuote = rest.dropFirst()
        guard let endQuote = afterQuote.firstIndex(of: "\"") else { return nil }
        let request = afterQuote[..<endQuote].split(separator: " ")
        let tail = afterQuote[afterQuote.index(after: endQuote)...].split(separator: " ")
        guard request.count == 3, request[2].hasPrefix("HTTP/"), let status = tail.first.flatMap({ Int($0) }) else {
            return nil
        }
        return RegistryAccessLogEntry(method: String(request[0]), path: String(request[1]), status: status)
    }

    // MARK: - Helpers

    private func config(port: Int) -> String {
        var yaml = """
            version: 0.1
            log:
              level: info
              accesslog:
                disabled: false
            storage:
              filesystem:
                rootdirectory: \(quoted(storageRoot))
              delete:
                enabled: true
              maintenance:
                uploadpurging:
                  enabled: false
            http:
              addr: 127.0.0.1:\(port)
              secret: \(quoted(UUID().uuidString))

            """
        if let tokenServer {
            yaml += """
                auth:
                  token:
                    realm: \(quoted(tokenServer.realm))
                    service: \(quoted(tokenServer.service))
                    issuer: \(quoted(tokenServer.issuer))
                    rootcertbundle: \(quoted(tokenServer.certificatePath))

                """
        }
        return yaml
    }

    private func quoted(_ value: String) -> String {
        "\"" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    private func waitUntilReady(child: ChildProcess, port: Int) async throws {
        let expected = tokenServer == nil ? 200 : 401
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(20))
        while clock.now < deadline {
            if !child.isRunning {
                throw FixtureError.process("docker-registry exited (\(child.exitStatus ?? -1)): \(child.output())")
            }
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v2/")
            request.method = .GET
            if let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(2)) {
                _ = try? await response.body.collect(upTo: 1 << 20)
                if Int(response.status.code) == expected { return }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw FixtureError.timeout("docker-registry did not answer \(expected) on /v2/ within 20 s: \(child.output())")
    }
}
