import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs short-lived command-line tools (the `docker` CLI, `ctr`) with a timeout, polling
/// with `Task.sleep` so the cooperative thread pool is never blocked.
public enum CommandRunner {
    /// Runs `executable` with `arguments` and returns its exit status and combined
    /// stdout+stderr.
    ///
    /// - Parameters:
    ///   - environment: the complete environment of the command; `nil` inherits this process's.
    ///   - outputDirectory: directory for the temporary output file (deleted afterwards);
    ///     `nil` uses the system temporary directory.
    ///   - timeout: the command is killed (SIGTERM, then SIGKILL) and
    ///     ``FixtureError/timeout(_:)`` thrown when it runs longer than this.
    /// - Throws: `CancellationError` (after killing the command) when the task is cancelled.
    public static func run(
        executable: String,
        arguments: [String],
        environment: [String: String]? = nil,
        outputDirectory: String? = nil,
        timeout: Duration
    ) async throws -> (status: Int32, output: String) {
        let directory = outputDirectory ?? FileManager.default.temporaryDirectory.path
        let outputPath = directory + "/cmd-\(UUID().uuidString.prefix(12)).log"
        defer { try? FileManager.default.removeItem(atPath: outputPath) }

        let child = try ChildProcess.spawn(
            executable: executable, arguments: arguments, environment: environment, outputPath: outputPath)
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while child.isRunning {
            if Task.isCancelled {
                await child.terminate(timeout: .seconds(2))
                throw CancellationError()
            }
            if clock.now >= deadline {
                await child.terminate(timeout: .seconds(2))
                let name = (executable as NSString).lastPathComponent
                throw FixtureError.timeout(
                    "\(name) \(arguments.joined(separator: " ")) after \(timeout): \(child.output())")
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        let status = await child.terminate()
        return (status, child.output())
    }
}

/// Helpers shared by ``DockerDaemon`` and ``ContainerdDaemon``: short temp directories,
/// a private mount namespace, and cleanup of every process that refers to a directory.
enum DaemonSupport {
    static let unshare = "/usr/bin/unshare"
    static let shell = "/bin/sh"

    /// PATH given to the daemons: distribution binaries first, so `/usr/local/bin` tools
    /// (for example a newer docker CLI) never shadow the Debian ones.
    static let daemonPath = "/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin"

    /// Proxy variables are dropped from the daemons' environment: every registry in a
    /// test is on loopback and must be reached directly.
    static let proxyVariables = [
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    ]

    /// Whether the effective user is root.
    static var isRoot: Bool { geteuid() == 0 }

    /// Which of `paths` are not executable files.
    static func missing(_ paths: [String]) -> [String] {
        paths.filter { !FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Creates `/tmp/<prefix>-` plus six random characters (mode 0700). Unix sockets live below it and
    /// `sun_path` holds only 108 bytes, so the path is kept short on purpose instead of
    /// using `$TMPDIR`.
    static func makeShortTemporaryDirectory(prefix: String) throws -> String {
        let pattern = "/tmp/\(prefix)-" + String(repeating: "X", count: 6)  // mkdtemp fills in the six characters
        var template = Array(pattern.utf8CString)
        let path = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let created = mkdtemp(buffer.baseAddress!) else { return nil }
            return String(cString: created)
        }
        guard let path else { throw FixtureError.system("mkdtemp \(pattern)", errno) }
        return path
    }

    /// The arguments for `unshare` that run `executable arguments...` in a new, private
    /// mount namespace with fresh tmpfs mounts on each of `tmpfsMounts` (for example
    /// `/run`), then `exec` it, so the daemon keeps unshare's PID.
    ///
    /// Every mount the daemon makes (dockerd bind-mounts its data root onto itself, the
    /// snapshotters mount layers) stays in that namespace and disappears with the last
    /// process in it, even after SIGKILL. Hard-coded host paths the daemons write to
    /// (dockerd 20.10 creates `/run/docker/plugins`; containerd's `opt` plugin creates
    /// `/opt/containerd`) land in the private tmpfs instead of on the host.
    static func namespacedArguments(tmpfsMounts: [String], executable: String, arguments: [String]) -> [String] {
        // The paths are fixed constants (no quoting needed); the daemon command line is
        // passed as positional parameters, so it is never re-parsed by the shell.
        let mounts = tmpfsMounts.map { "mount -t tmpfs -o mode=755,size=16m tmpfs \($0)" }
        let script = (mounts + ["exec \"$0\" \"$@\""]).joined(separator: " && ")
        return ["--mount", "--propagation", "private", shell, "-c", script, executable] + arguments
    }

    /// This process's environment without variables whose name starts with any of
    /// `droppedPrefixes`, plus `overrides`.
    static func environment(dropping droppedPrefixes: [String], overrides: [String: String]) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { key, _ in
            !droppedPrefixes.contains { key.hasPrefix($0) }
        }
        for (key, value) in overrides { environment[key] = value }
        return environment
    }

    /// PIDs (other than this process) whose command line mentions `directory + "/"`,
    /// i.e. the daemon, its managed containerd and any shims started for it.
    static func processes(referencing directory: String) -> [Int32] {
        let needle = Array((directory.hasSuffix("/") ? directory : directory + "/").utf8)
        let me = getpid()
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var found: [Int32] = []
        for entry in entries {
            guard let pid = Int32(entry), pid != me,
                let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"), !data.isEmpty
            else { continue }
            if contains(Array(data), needle) && !isZombie(pid) { found.append(pid) }
        }
        return found
    }

    /// Whether `pid` is a zombie (dead, not yet reaped) or gone.
    static func isZombie(_ pid: Int32) -> Bool { ProcFS.state("\(pid)").map { $0 == "Z" } ?? true }

    /// SIGKILLs every live process referring to `directory` (see ``processes(referencing:)``)
    /// and waits up to `timeout` until none is left. Returns the PIDs still alive.
    @discardableResult
    static func killProcesses(referencing directory: String, timeout: Duration = .seconds(10)) async -> [Int32] {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            let alive = processes(referencing: directory)
            if alive.isEmpty || clock.now >= deadline { return alive }
            for pid in alive { kill(pid, SIGKILL) }
            await pause(.milliseconds(20))
        }
    }

    /// Lazily unmounts (MNT_DETACH) every mount of this process's namespace at or below
    /// `directory`, deepest first. Normally there is none: the daemons mount only inside
    /// their private namespace. This is a safety net.
    static func unmountAll(under directory: String) {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return }
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        let points = text.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { return nil }
            // mountinfo escapes space, tab, newline and backslash as octal.
            let point = String(fields[4])
                .replacingOccurrences(of: "\\040", with: " ")
                .replacingOccurrences(of: "\\011", with: "\t")
                .replacingOccurrences(of: "\\012", with: "\n")
                .replacingOccurrences(of: "\\134", with: "\\")
            return point == directory || point.hasPrefix(prefix) ? point : nil
        }
        for point in points.sorted(by: { $0.count > $1.count }) {
            #if os(Linux)
            _ = umount2(point, Int32(MNT_DETACH))
            #else
            _ = unmount(point, MNT_FORCE)
            #endif
        }
    }

    /// Polls `check` every 100 ms until it returns true, the child exits, or `timeout`.
    static func waitUntil(
        timeout: Duration, child: ChildProcess, name: String, check: () async -> Bool
    ) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            if !child.isRunning {
                throw FixtureError.process("\(name) exited (\(child.exitStatus ?? -1)) during start: \(child.output())")
            }
            if await check() { return }
            if clock.now >= deadline {
                throw FixtureError.timeout("\(name) not ready within \(timeout): \(child.output())")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Sleeps even in a cancelled task, so cleanup still waits.
    static func pause(_ duration: Duration) async {
        if Task.isCancelled {
            usleep(useconds_t(duration.components.attoseconds / 1_000_000_000_000))
        } else {
            try? await Task.sleep(for: duration)
        }
    }

    /// Stops a daemon's processes: SIGTERM (SIGKILL after `gracePeriod`) to the daemon,
    /// SIGKILL to anything still referring to `directory`, then a safety-net unmount of
    /// anything below `directory`. Returns the PIDs that could not be killed.
    static func tearDownProcesses(child: ChildProcess?, directory: String, gracePeriod: Duration) async -> [Int32] {
        if let child { await child.terminate(timeout: gracePeriod) }
        let survivors = await killProcesses(referencing: directory)
        unmountAll(under: directory)
        return survivors
    }

    /// Deletes `directory` and everything below it; returns false if that failed.
    @discardableResult
    static func removeDirectory(_ directory: String) -> Bool {
        guard FileManager.default.fileExists(atPath: directory) else { return true }
        return (try? FileManager.default.removeItem(atPath: directory)) != nil
    }

    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        var index = 0
        while index <= haystack.count - needle.count {
            if haystack[index] == needle[0] && Array(haystack[index..<(index + needle.count)]) == needle { return true }
            index += 1
        }
        return false
    }

    /// Encodes `value` as a JSON string literal.
    static func jsonString(_ value: String) -> String {
        let data = (try? JSONEncoder().encode(value)) ?? Data("\"\"".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// Encodes `value` as a TOML basic string.
    static func tomlString(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += String(format: "\\u%04X", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
