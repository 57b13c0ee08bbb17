import Foundation
import Synchronization

/// A real, isolated, rootful `dockerd` (Debian's 20.10, classic image store) used as a
/// registry client in integration tests.
///
/// Everything lives in one short temp directory `/tmp/wd-` plus six random characters (see ``directory``):
/// `daemon.json`, `data/` (data root, vfs storage driver), `exec/` (exec root; dockerd's
/// managed containerd puts its sockets in `exec/containerd/`), `docker.sock`,
/// `docker.pid`, `key.json`, `dockerd.log` and `cli/` (the `DOCKER_CONFIG` of the CLI).
/// No networking is set up (`bridge: none`, no iptables, no ip forwarding), so the
/// daemon can pull but cannot run containers with networks; running containers would
/// also create cgroups on the host, so only use it to pull and inspect images.
///
/// dockerd runs under `unshare --mount --propagation private` with private tmpfs
/// mounts on `/run` and `/opt`: dockerd 20.10 hard-codes `/run/docker/plugins`, and its
/// managed containerd's `opt` plugin creates `/opt/containerd`; the data-root bind mount
/// dockerd makes also stays inside that namespace and vanishes with it.
///
/// `registry-mirrors` apply only to Docker Hub references (`alpine:3.20`,
/// `library/alpine:3.20`, `docker.io/library/alpine:3.20`). With no internet, a pull that
/// succeeds therefore proves the mirror served it (the fallback `registry-1.docker.io`
/// is unreachable). dockerd 20.10 rejects a mirror URL with a path.
///
/// Several instances may run at once. Always call ``stop()``, also after a failed
/// ``start(timeout:)``: it kills everything started for this instance and deletes the
/// directory.
public final class DockerDaemon: Sendable {
    public static let dockerdPath = "/usr/sbin/dockerd"
    /// The 20.10 CLI from Debian's docker.io (a newer one may sit in /usr/local/bin).
    public static let dockerPath = "/usr/bin/docker"
    /// dockerd starts its own containerd from PATH.
    static let containerdPath = "/usr/bin/containerd"

    /// Whether dockerd, the docker CLI, containerd and unshare are installed and we are root.
    public static var isAvailable: Bool { unavailableReason == nil }

    /// Why the fixture cannot run here, or `nil` when it can.
    public static var unavailableReason: String? {
        if !DaemonSupport.isRoot { return "DockerDaemon needs root (dockerd is rootful)" }
        let missing = DaemonSupport.missing([dockerdPath, dockerPath, containerdPath, DaemonSupport.unshare])
        if !missing.isEmpty {
            return "DockerDaemon needs \(missing.joined(separator: ", ")) (Debian packages docker.io, containerd, util-linux)"
        }
        return nil
    }

    /// The instance's temp directory, `/tmp/wd-` plus six random characters.
    public let directory: String
    /// The mirrors written to `registry-mirrors`.
    public let registryMirrors: [String]
    /// `unix://<directory>/docker.sock`, the daemon's only API endpoint.
    public var host: String { "unix://" + socketPath }
    public var socketPath: String { directory + "/docker.sock" }
    public var daemonConfigPath: String { directory + "/daemon.json" }
    public var logPath: String { directory + "/dockerd.log" }

    private struct State {
        var child: ChildProcess?
        var stopped = false
        /// The log, kept when ``stop()`` deletes the directory.
        var finalLog: String?
    }

    private let state = Mutex(State())

    /// Creates the temp directory and writes `daemon.json`.
    ///
    /// - Parameters:
    ///   - registryMirrors: `registry-mirrors`, e.g. `["http://127.0.0.1:5000"]` (scheme
    ///     required, no path with dockerd 20.10). `http://` mirrors are spoken to in plain HTTP.
    ///   - insecureRegistries: `insecure-registries` (127.0.0.0/8 is insecure anyway).
    ///   - extraConfig: more `daemon.json` keys, each value raw JSON text (e.g.
    ///     `["max-concurrent-downloads": "1", "debug": "true"]`); a key given here replaces
    ///     the fixture's own value. dockerd is started with `--config-file` only, so any
    ///     key is allowed (dockerd refuses a setting given both as a flag and in the file).
    /// - Throws: ``FixtureError/state(_:)`` when dockerd, the CLI, containerd or unshare is
    ///   missing or we are not root; ``FixtureError/invalid(_:)`` for a bad extra value.
    public init(registryMirrors: [String], insecureRegistries: [String] = [], extraConfig: [String: String] = [:]) throws {
        if let reason = Self.unavailableReason { throw FixtureError.state(reason) }
        for (key, value) in extraConfig {
            guard (try? JSONSerialization.jsonObject(with: Data(value.utf8), options: [.fragmentsAllowed])) != nil else {
                throw FixtureError.invalid("extraConfig[\(key)] is not valid JSON: \(value)")
            }
        }
        let directory = try DaemonSupport.makeShortTemporaryDirectory(prefix: "wd")
        self.directory = directory
        self.registryMirrors = registryMirrors
        do {
            for sub in ["data", "exec", "cli"] {
                try FileManager.default.createDirectory(atPath: directory + "/" + sub, withIntermediateDirectories: true)
            }
            let json = Self.daemonJSON(
                directory: directory, mirrors: registryMirrors, insecure: insecureRegistries, extra: extraConfig)
            try json.write(toFile: directory + "/daemon.json", atomically: true, encoding: .utf8)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    /// The process id of dockerd once started.
    public var pid: Int32? { state.withLock { $0.child?.pid } }

    /// The PID of the containerd dockerd manages (read from its pid file), if running.
    public var managedContainerdPID: Int32? {
        guard let text = try? String(contentsOfFile: directory + "/exec/containerd/containerd.pid", encoding: .utf8)
        else { return nil }
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Starts dockerd and waits until `docker version` reaches the server (about 0.3 s here).
    /// On failure the daemon is killed and the error carries its log; call ``stop()`` anyway.
    public func start(timeout: Duration = .seconds(60)) async throws {
        let alreadyStarted = state.withLock { state -> Bool in
            if state.child != nil || state.stopped { return true }
            return false
        }
        if alreadyStarted { throw FixtureError.state("DockerDaemon.start() may be called once, before stop()") }

        let arguments = DaemonSupport.namespacedArguments(
            tmpfsMounts: ["/run", "/opt"], executable: Self.dockerdPath,
            arguments: ["--config-file", daemonConfigPath])
        let environment = DaemonSupport.environment(
            dropping: ["DOCKER_", "CONTAINERD_"] + DaemonSupport.proxyVariables, overrides: ["PATH": DaemonSupport.daemonPath])
        let child = try ChildProcess.spawn(
            executable: DaemonSupport.unshare, arguments: arguments, environment: environment, outputPath: logPath,
            currentDirectory: directory)
        state.withLock { $0.child = child }
        do {
            try await DaemonSupport.waitUntil(timeout: timeout, child: child, name: "dockerd") {
                guard let result = try? await self.docker(["version", "--format", "{{.Server.Version}}"], timeout: .seconds(5))
                else { return false }
                return result.status == 0
            }
        } catch {
            _ = await DaemonSupport.tearDownProcesses(child: child, directory: directory, gracePeriod: .seconds(5))
            throw error
        }
    }

    /// Runs the docker CLI (`/usr/bin/docker`) against this daemon with `DOCKER_HOST` and
    /// a private `DOCKER_CONFIG`. Returns the exit status and combined output.
    public func docker(_ arguments: [String], timeout: Duration = .seconds(180)) async throws -> (status: Int32, output: String) {
        let environment = DaemonSupport.environment(
            dropping: ["DOCKER_"],
            overrides: ["DOCKER_HOST": host, "DOCKER_CONFIG": directory + "/cli", "DOCKER_CLI_HINTS": "false"])
        return try await CommandRunner.run(
            executable: Self.dockerPath, arguments: arguments, environment: environment, outputDirectory: directory,
            timeout: timeout)
    }

    /// `docker pull <reference>`. A non-zero status is returned, not thrown.
    public func pull(_ reference: String, timeout: Duration = .seconds(180)) async throws -> (status: Int32, output: String) {
        try await docker(["pull", reference], timeout: timeout)
    }

    /// `docker image rm <reference>` (so the next pull fetches again). Returns the status.
    @discardableResult
    public func removeImage(_ reference: String) async throws -> Int32 {
        try await docker(["image", "rm", "--force", reference], timeout: .seconds(60)).status
    }

    /// `RepoDigests` of a local image, e.g. `["alpine@sha256:…"]` (dockerd writes Docker
    /// Hub names in their short form, without `docker.io/library/`).
    public func repoDigests(_ reference: String) async throws -> [String] {
        let output = try await inspect(reference, format: "{{json .RepoDigests}}")
        guard let data = output.data(using: .utf8),
            let digests = try? JSONSerialization.jsonObject(with: data) as? [String]
        else {
            if output == "null" { return [] }
            throw FixtureError.invalid("unexpected RepoDigests output: \(output)")
        }
        return digests
    }

    /// The image ID (`sha256:` of the image config blob) of a local image.
    public func imageID(_ reference: String) async throws -> String {
        try await inspect(reference, format: "{{.Id}}")
    }

    /// The daemon's exit status once it has exited (after ``stop()``: 0 for a clean
    /// shutdown on SIGTERM, 137 if it had to be killed), or `nil` while it runs.
    public var exitStatus: Int32? { state.withLock { $0.child?.exitStatus } }

    /// The daemon's log so far (after ``stop()``: the log as it was at the end).
    public func log() -> String {
        if let final = state.withLock({ $0.finalLog }) { return final }
        return (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Stops dockerd (SIGTERM; SIGKILL after 20 s; about 2 s when idle), SIGKILLs anything
    /// still referring to the directory (the managed containerd and shims), unmounts
    /// anything left below it and deletes it. Safe to call more than once and without
    /// ``start(timeout:)``.
    public func stop() async {
        let (child, first) = state.withLock { state -> (ChildProcess?, Bool) in
            if state.stopped { return (nil, false) }
            state.stopped = true
            return (state.child, true)
        }
        guard first else { return }
        _ = await DaemonSupport.tearDownProcesses(child: child, directory: directory, gracePeriod: .seconds(20))
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        state.withLock { $0.finalLog = log }
        _ = DaemonSupport.removeDirectory(directory)
    }

    // MARK: - Helpers

    private func inspect(_ reference: String, format: String) async throws -> String {
        let result = try await docker(["image", "inspect", "--format", format, reference], timeout: .seconds(30))
        guard result.status == 0 else {
            throw FixtureError.process("docker image inspect \(reference) failed (\(result.status)): \(result.output)")
        }
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `daemon.json`: every setting is here (none as a flag, since dockerd refuses a
    /// setting given both ways).
    static func daemonJSON(directory: String, mirrors: [String], insecure: [String], extra: [String: String]) -> String {
        func list(_ values: [String]) -> String { "[" + values.map(DaemonSupport.jsonString).joined(separator: ",") + "]" }
        var settings: [(String, String)] = [
            ("data-root", DaemonSupport.jsonString(directory + "/data")),
            ("exec-root", DaemonSupport.jsonString(directory + "/exec")),
            ("pidfile", DaemonSupport.jsonString(directory + "/docker.pid")),
            ("hosts", list(["unix://" + directory + "/docker.sock"])),
            // dockerd 20.10 otherwise writes /etc/docker/key.json.
            ("deprecated-key-path", DaemonSupport.jsonString(directory + "/key.json")),
            ("storage-driver", "\"vfs\""),
            ("bridge", "\"none\""),
            ("iptables", "false"),
            ("ip6tables", "false"),
            ("ip-forward", "false"),
            ("ip-masq", "false"),
            ("userland-proxy", "false"),
            ("registry-mirrors", list(mirrors)),
            ("log-level", "\"debug\""),
        ]
        if !insecure.isEmpty { settings.append(("insecure-registries", list(insecure))) }
        settings.removeAll { extra[$0.0] != nil }
        settings += extra.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        let body = settings.map { "  \(DaemonSupport.jsonString($0.0)): \($0.1)" }.joined(separator: ",\n")
        return "{\n" + body + "\n}\n"
    }
}
