import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Runs the real HAProxy (`/usr/sbin/haproxy -f CONFIG -db`, in the foreground) on loopback in front
/// of backend servers given by port.
///
/// The configuration comes from a template, normally a shipped file such as
/// `deploy/haproxy/haproxy.cfg`, so that the routing rules under test are the ones that ship. Only
/// addresses are rewritten (see ``config(fromTemplate:backend:backendPorts:frontendPorts:serverOptions:statsPort:)``):
/// every `bind` becomes `127.0.0.1:<free port>`, the address of each `server` line of the chosen backend
/// becomes `127.0.0.1:<backend port>` (in order), and a stats listener for the fixture is appended.
///
/// ``start(template:backend:backendPorts:serverOptions:)`` waits until HAProxy answers and every server of
/// the backend is UP. ``stop()`` terminates the process by PID and deletes the temp folder.
public final class HAProxyProcess: Sendable {
    public static let executable = "/usr/sbin/haproxy"

    /// A small template for tests that only need a load balancer: round robin over `serverCount` servers
    /// checked with `GET /_ping`.
    public static func roundRobinTemplate(serverCount: Int) -> String {
        var lines = [
            "defaults", "    mode http", "    timeout connect 5s", "    timeout client 60s", "    timeout server 60s",
            "frontend main", "    bind :0", "    default_backend app",
            "backend app", "    balance roundrobin", "    option httpchk GET /_ping", "    default-server check inter 500ms fall 2 rise 1",
        ]
        for i in 0..<serverCount { lines.append("    server s\(i + 1) 127.0.0.1:1") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Port of the first frontend (where clients connect).
    public let port: Int
    /// Port of every frontend or listen section, by section name.
    public let frontendPorts: [String: Int]
    /// Port of the stats page the fixture adds (`/haproxy-stats`, `;csv` for CSV).
    public let statsPort: Int
    /// The backend whose servers were rewritten.
    public let backend: String
    /// The configuration HAProxy runs.
    public let configuration: String
    private let directory: String
    private let child: ChildProcess

    public var url: String { "http://127.0.0.1:\(self.port)" }
    public var host: String { "127.0.0.1:\(self.port)" }
    public var pid: Int32 { self.child.pid }

    private init(
        port: Int, frontendPorts: [String: Int], statsPort: Int, backend: String, configuration: String, directory: String,
        child: ChildProcess
    ) {
        self.port = port
        self.frontendPorts = frontendPorts
        self.statsPort = statsPort
        self.backend = backend
        self.configuration = configuration
        self.directory = directory
        self.child = child
    }

    /// Rewrites `template` for loopback: each `bind` line of a `frontend`/`listen` section becomes
    /// `bind 127.0.0.1:<frontendPorts[section]>` (further `bind` lines of the same section are dropped); the
    /// `server` lines of `backend` get `127.0.0.1:<backendPorts[i]>` as address, in order, followed by
    /// `serverOptions` (later keywords override earlier ones and `default-server`); a `frontend
    /// fixture-stats` on `statsPort` is appended. Comments and everything else are kept as they are.
    /// Throws when the backend is missing or its number of `server` lines differs from `backendPorts.count`.
    public static func config(
        fromTemplate template: String, backend: String, backendPorts: [Int], frontendPorts: [String: Int], serverOptions: String = "",
        statsPort: Int
    ) throws -> String {
        var out: [String] = []
        var section = ""
        var sectionName = ""
        var boundSections = Set<String>()
        var serverIndex = 0
        var sawBackend = false
        for raw in template.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            if let first = line.first, first != " ", first != "\t", first != "#", !words.isEmpty {
                section = words[0]
                sectionName = words.count > 1 ? words[1] : ""
                if section == "backend" || section == "listen", sectionName == backend { sawBackend = true }
                out.append(line)
                continue
            }
            let indent = String(line.prefix { $0 == " " || $0 == "\t" })
            if (section == "frontend" || section == "listen"), words.first == "bind" {
                guard !boundSections.contains(sectionName) else { continue }
                guard let port = frontendPorts[sectionName] else {
                    throw FixtureError.invalid("no port given for the bind line of '\(sectionName)'")
                }
                boundSections.insert(sectionName)
                out.append("\(indent)bind 127.0.0.1:\(port)")
                continue
            }
            if (section == "backend" || section == "listen"), sectionName == backend, words.first == "server", words.count >= 3 {
                guard serverIndex < backendPorts.count else {
                    throw FixtureError.invalid("backend '\(backend)' has more server lines than the \(backendPorts.count) ports given")
                }
                var rewritten = words
                rewritten[2] = "127.0.0.1:\(backendPorts[serverIndex])"
                serverIndex += 1
                out.append(indent + rewritten.joined(separator: " ") + (serverOptions.isEmpty ? "" : " " + serverOptions))
                continue
            }
            out.append(line)
        }
        guard sawBackend else { throw FixtureError.invalid("the template has no backend '\(backend)'") }
        guard serverIndex == backendPorts.count else {
            throw FixtureError.invalid("backend '\(backend)' has \(serverIndex) server lines but \(backendPorts.count) ports were given")
        }
        out.append("")
        out.append("frontend fixture-stats")
        out.append("    mode http")
        out.append("    bind 127.0.0.1:\(statsPort)")
        out.append("    stats enable")
        out.append("    stats uri /haproxy-stats")
        out.append("")
        return out.joined(separator: "\n")
    }

    /// Names of the `frontend` and `listen` sections that have a `bind` line, in file order.
    public static func frontendNames(in template: String) -> [String] {
        var names: [String] = []
        var current: String?
        for raw in template.split(separator: "\n") {
            let words = raw.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let first = raw.first, !words.isEmpty else { continue }
            if first != " ", first != "\t", first != "#" {
                current = (words[0] == "frontend" || words[0] == "listen") && words.count > 1 ? words[1] : nil
            } else if words[0] == "bind", let name = current, !names.contains(name) {
                names.append(name)
            }
        }
        return names
    }

    /// Starts HAProxy with `template` rewritten for loopback (see
    /// ``config(fromTemplate:backend:backendPorts:frontendPorts:serverOptions:statsPort:)``) and waits until
    /// it serves and every server of `backend` is UP (up to `timeout`).
    public static func start(
        template: String, backend: String, backendPorts: [Int], serverOptions: String = "", timeout: Duration = .seconds(20)
    ) async throws -> HAProxyProcess {
        guard FileManager.default.isExecutableFile(atPath: Self.executable) else {
            throw FixtureError.state("\(Self.executable) is not installed (apt-get install haproxy)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-haproxy-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let names = Self.frontendNames(in: template)
        guard !names.isEmpty else { throw FixtureError.invalid("the template has no frontend with a bind line") }
        var lastOutput = ""
        for attempt in 0..<3 {
            var ports: [String: Int] = [:]
            for name in names { ports[name] = try FreePort.loopback() }
            let statsPort = try FreePort.loopback()
            let config = try Self.config(
                fromTemplate: template, backend: backend, backendPorts: backendPorts, frontendPorts: ports, serverOptions: serverOptions,
                statsPort: statsPort)
            let path = directory + "/haproxy.cfg"
            try config.write(toFile: path, atomically: true, encoding: .utf8)
            let child = try ChildProcess.spawn(
                executable: Self.executable, arguments: ["-f", path, "-db"], outputPath: directory + "/haproxy-\(attempt).log")
            let process = HAProxyProcess(
                port: ports[names[0]]!, frontendPorts: ports, statsPort: statsPort, backend: backend, configuration: config,
                directory: directory, child: child)
            do {
                try await process.waitUntilServers(are: "UP", timeout: timeout)
                return process
            } catch {
                lastOutput = child.output()
                await child.terminate(timeout: .seconds(2))
                if !lastOutput.contains("cannot bind") && !lastOutput.contains("Address already in use") {
                    try? FileManager.default.removeItem(atPath: directory)
                    throw FixtureError.process("haproxy did not start (\(error)): \(lastOutput)")
                }
            }
        }
        try? FileManager.default.removeItem(atPath: directory)
        throw FixtureError.process("haproxy could not bind a free port: \(lastOutput)")
    }

    /// State of each server of the backend as HAProxy's stats report it ("UP", "DOWN", "MAINT",
    /// "UP 1/2" while rising, "no check", …), by server name.
    public func serverStates() async throws -> [String: String] {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(self.statsPort)/haproxy-stats;csv")
        request.method = .GET
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 4 << 20)
        guard response.status.code == 200 else { throw FixtureError.process("haproxy stats answered \(response.status.code)") }
        let lines = String(buffer: body).split(separator: "\n").map(String.init)
        guard let header = lines.first, header.hasPrefix("# ") else { throw FixtureError.invalid("unexpected stats CSV") }
        let columns = header.dropFirst(2).split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard let px = columns.firstIndex(of: "pxname"), let sv = columns.firstIndex(of: "svname"), let st = columns.firstIndex(of: "status")
        else { throw FixtureError.invalid("stats CSV without pxname/svname/status") }
        var states: [String: String] = [:]
        for line in lines.dropFirst() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard fields.count > max(px, sv, st), fields[px] == self.backend, fields[sv] != "BACKEND", fields[sv] != "FRONTEND" else { continue }
            states[fields[sv]] = fields[st]
        }
        return states
    }

    /// Waits until each named server (every server of the backend when `servers` is nil) reports
    /// `state` ("UP" or "DOWN"; transitional states such as "UP 1/2" do not count).
    public func waitUntilServers(_ servers: [String]? = nil, are state: String, timeout: Duration = .seconds(20)) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var last: [String: String] = [:]
        while clock.now < deadline {
            if !self.child.isRunning {
                throw FixtureError.process("haproxy exited (\(self.child.exitStatus ?? -1)): \(self.child.output())")
            }
            if let states = try? await self.serverStates() {
                last = states
                let names = servers ?? Array(states.keys)
                if names.allSatisfy({ states[$0] == state }) { return }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw FixtureError.timeout("haproxy servers \(servers ?? Array(last.keys)) not \(state) within \(timeout): \(last)")
    }

    /// HAProxy's output so far (its log goes to stdout with `log stdout`).
    public func output() -> String { self.child.output() }

    /// Terminates HAProxy by PID (SIGTERM, SIGKILL after 5 s) and deletes its temp folder.
    public func stop() async {
        await self.child.terminate(timeout: .seconds(5))
        try? FileManager.default.removeItem(atPath: self.directory)
    }
}
