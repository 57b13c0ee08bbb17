import Foundation
import Synchronization

/// A real, isolated `containerd` (Debian's 1.6) driven with `ctr`, used as a registry
/// client in integration tests.
///
/// Everything lives in one short temp directory `/tmp/wc-` plus six random characters (see ``directory``):
/// `config.toml`, `root/`, `state/`, `tmp/`, `containerd.sock` (+ `.ttrpc`),
/// `containerd.log` and `certs.d/` (the `--hosts-dir` handed to `ctr`). The config is
/// version 2 with the CRI, `opt`, tracing and unusable snapshotter plugins disabled, no
/// debug socket and no metrics listener. Images are unpacked with the `native`
/// snapshotter, which needs no overlayfs.
///
/// containerd runs under `unshare --mount --propagation private` with a private tmpfs
/// on `/run`, so whatever it mounts while unpacking stays in that namespace.
///
/// `ctr` does not normalize references: use fully qualified ones such as
/// `docker.io/library/alpine:3.20` or `ghcr.io/owner/app:1`. Mirrors are configured per
/// registry with ``configureMirror(registries:mirror:capabilities:skipVerify:caCertificatePath:)``;
/// containerd then adds `?ns=<registry>` to every request it sends to the mirror.
///
/// Several instances may run at once. Always call ``stop()``.
public final class ContainerdDaemon: Sendable {
    public static let containerdPath = "/usr/bin/containerd"
    public static let ctrPath = "/usr/bin/ctr"

    /// Whether containerd, ctr and unshare are installed and we are root.
    public static var isAvailable: Bool { unavailableReason == nil }

    /// Why the fixture cannot run here, or `nil` when it can.
    public static var unavailableReason: String? {
        if !DaemonSupport.isRoot { return "ContainerdDaemon needs root" }
        let missing = DaemonSupport.missing([containerdPath, ctrPath, DaemonSupport.unshare])
        if !missing.isEmpty {
            return "ContainerdDaemon needs \(missing.joined(separator: ", ")) (Debian packages containerd, util-linux)"
        }
        return nil
    }

    /// The instance's temp directory, `/tmp/wc-` plus six random characters.
    public let directory: String
    /// The containerd namespace every ``ctr(_:timeout:)`` call uses (`ctr -n`).
    public let namespace: String
    /// The gRPC socket (`ctr --address`).
    public var socketPath: String { directory + "/containerd.sock" }
    /// The `--hosts-dir` passed by ``pull(_:plainHTTP:extraArguments:timeout:)``.
    public var hostsDirectory: String { directory + "/certs.d" }
    public var configPath: String { directory + "/config.toml" }
    public var logPath: String { directory + "/containerd.log" }

    private struct State {
        var child: ChildProcess?
        var stopped = false
        var finalLog: String?
    }

    private let state = Mutex(State())

    /// Creates the temp directory and writes the config.
    /// - Throws: ``FixtureError/state(_:)`` when containerd, ctr or unshare is missing or
    ///   we are not root.
    public init(namespace: String = "wharf-test") throws {
        if let reason = Self.unavailableReason { throw FixtureError.state(reason) }
        let directory = try DaemonSupport.makeShortTemporaryDirectory(prefix: "wc")
        self.directory = directory
        self.namespace = namespace
        do {
            for sub in ["root", "state", "tmp", "certs.d"] {
                try FileManager.default.createDirectory(atPath: directory + "/" + sub, withIntermediateDirectories: true)
            }
            try Self.config(directory: directory).write(toFile: configPath, atomically: true, encoding: .utf8)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    /// The process id of containerd once started.
    public var pid: Int32? { state.withLock { $0.child?.pid } }

    /// Starts containerd and waits until `ctr version` reaches it (about 0.05 s here).
    /// On failure the daemon is killed and the error carries its log; call ``stop()`` anyway.
    public func start(timeout: Duration = .seconds(30)) async throws {
        let alreadyStarted = state.withLock { $0.child != nil || $0.stopped }
        if alreadyStarted { throw FixtureError.state("ContainerdDaemon.start() may be called once, before stop()") }
        let arguments = DaemonSupport.namespacedArguments(
            tmpfsMounts: ["/run"], executable: Self.containerdPath, arguments: ["--config", configPath])
        let environment = DaemonSupport.environment(
            dropping: ["CONTAINERD_"] + DaemonSupport.proxyVariables, overrides: ["PATH": DaemonSupport.daemonPath])
        let child = try ChildProcess.spawn(
            executable: DaemonSupport.unshare, arguments: arguments, environment: environment, outputPath: logPath,
            currentDirectory: directory)
        state.withLock { $0.child = child }
        do {
            try await DaemonSupport.waitUntil(timeout: timeout, child: child, name: "containerd") {
                guard let result = try? await self.ctr(["version"], timeout: .seconds(5)) else { return false }
                return result.status == 0
            }
        } catch {
            _ = await DaemonSupport.tearDownProcesses(child: child, directory: directory, gracePeriod: .seconds(5))
            throw error
        }
    }

    /// Writes `<hostsDirectory>/<registry>/hosts.toml` for each registry, naming `mirror`
    /// as its only host. No `server` line is written, so after the mirror containerd falls
    /// back to the registry itself (unreachable without internet).
    ///
    /// - Parameters:
    ///   - registries: registry hosts as they appear in references (`docker.io`,
    ///     `ghcr.io`, `localhost:5000`; a port is written as `host_port_`), or `_default`
    ///     for every registry without its own file.
    ///   - mirror: the mirror's URL, e.g. `http://127.0.0.1:5000` (a path is allowed and
    ///     goes before `/v2/`).
    ///   - capabilities: `pull` (fetch by digest), `resolve` (tag to digest), `push`, …
    ///   - skipVerify, caCertificatePath: TLS settings for an `https://` mirror.
    public func configureMirror(
        registries: [String],
        mirror: String,
        capabilities: [String] = ["pull", "resolve"],
        skipVerify: Bool = false,
        caCertificatePath: String? = nil
    ) throws {
        var toml = "[host.\(DaemonSupport.tomlString(mirror))]\n"
        toml += "  capabilities = [" + capabilities.map(DaemonSupport.tomlString).joined(separator: ", ") + "]\n"
        if skipVerify { toml += "  skip_verify = true\n" }
        if let caCertificatePath { toml += "  ca = \(DaemonSupport.tomlString(caCertificatePath))\n" }
        for registry in registries {
            guard !registry.isEmpty, !registry.contains("/"), registry != ".", registry != ".." else {
                throw FixtureError.invalid("not a registry host: \(registry)")
            }
            let folder = hostsDirectory + "/" + Self.hostDirectoryName(registry)
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try toml.write(toFile: folder + "/hosts.toml", atomically: true, encoding: .utf8)
        }
    }

    /// `ctr images pull --hosts-dir <hostsDirectory> --snapshotter native [--plain-http]
    /// [extraArguments] <reference>`; the image is unpacked, which checks the layers
    /// against the config's `diff_ids`. A non-zero status is returned, not thrown.
    ///
    /// Blobs already in the content store are not fetched again, even after
    /// ``removeImage(_:)`` unless garbage collection has run (it does with `--sync`).
    public func pull(
        _ reference: String, plainHTTP: Bool = true, extraArguments: [String] = [], timeout: Duration = .seconds(180)
    ) async throws -> (status: Int32, output: String) {
        var arguments = ["images", "pull", "--hosts-dir", hostsDirectory, "--snapshotter", "native"]
        if plainHTTP { arguments.append("--plain-http") }
        arguments += extraArguments
        arguments.append(reference)
        return try await ctr(arguments, timeout: timeout)
    }

    /// The target digest (manifest or index digest) recorded for `reference` in this
    /// namespace, or `nil` if there is no such image. `reference` must be fully qualified.
    public func imageDigest(_ reference: String) async throws -> String? {
        let result = try await ctr(["images", "ls", "name==" + reference], timeout: .seconds(30))
        guard result.status == 0 else {
            throw FixtureError.process("ctr images ls failed (\(result.status)): \(result.output)")
        }
        // REF TYPE DIGEST SIZE PLATFORMS LABELS
        for line in result.output.split(separator: "\n").dropFirst() {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.count >= 3, fields[0] == reference, fields[2].hasPrefix("sha256:") {
                return String(fields[2])
            }
        }
        return nil
    }

    /// `ctr images rm --sync <reference>`: deletes the image and waits for garbage
    /// collection, so unreferenced blobs leave the content store. Returns the status.
    @discardableResult
    public func removeImage(_ reference: String) async throws -> Int32 {
        try await ctr(["images", "rm", "--sync", reference], timeout: .seconds(60)).status
    }

    /// Runs `ctr --address <socket> --namespace <namespace> <arguments>`.
    public func ctr(_ arguments: [String], timeout: Duration = .seconds(180)) async throws -> (status: Int32, output: String) {
        let environment = DaemonSupport.environment(dropping: ["CONTAINERD_"] + DaemonSupport.proxyVariables, overrides: [:])
        return try await CommandRunner.run(
            executable: Self.ctrPath, arguments: ["--address", socketPath, "--namespace", namespace] + arguments,
            environment: environment, outputDirectory: directory, timeout: timeout)
    }

    /// The daemon's exit status once it has exited (after ``stop()``: 0 for a clean
    /// shutdown on SIGTERM, 137 if it had to be killed), or `nil` while it runs.
    public var exitStatus: Int32? { state.withLock { $0.child?.exitStatus } }

    /// The daemon's log so far (after ``stop()``: the log as it was at the end).
    public func log() -> String {
        if let final = state.withLock({ $0.finalLog }) { return final }
        return (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Stops containerd (SIGTERM; SIGKILL after 10 s; about 1 s when idle), SIGKILLs
    /// anything still referring to the directory, unmounts anything left below it and
    /// deletes it. Safe to call more than once and without ``start(timeout:)``.
    public func stop() async {
        let (child, first) = state.withLock { state -> (ChildProcess?, Bool) in
            if state.stopped { return (nil, false) }
            state.stopped = true
            return (state.child, true)
        }
        guard first else { return }
        _ = await DaemonSupport.tearDownProcesses(child: child, directory: directory, gracePeriod: .seconds(10))
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        state.withLock { $0.finalLog = log }
        DaemonSupport.removeDirectory(directory)
    }

    // MARK: - Helpers

    /// `host:port` → `host_port_` (containerd 1.6 `hostDirectory`); anything else unchanged.
    public static func hostDirectoryName(_ registry: String) -> String {
        guard let colon = registry.lastIndex(of: ":"), colon != registry.startIndex else { return registry }
        return String(registry[..<colon]) + "_" + String(registry[registry.index(after: colon)...]) + "_"
    }

    static func config(directory: String) -> String {
        let disabled = [
            "io.containerd.grpc.v1.cri",
            "io.containerd.internal.v1.opt",  // would create /opt/containerd
            "io.containerd.internal.v1.tracing",
            "io.containerd.tracing.processor.v1.otlp",
            "io.containerd.snapshotter.v1.aufs",  // runs modprobe
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.zfs",
            "io.containerd.snapshotter.v1.devmapper",
        ]
        return """
            version = 2
            root = \(DaemonSupport.tomlString(directory + "/root"))
            state = \(DaemonSupport.tomlString(directory + "/state"))
            temp = \(DaemonSupport.tomlString(directory + "/tmp"))
            disabled_plugins = [\(disabled.map(DaemonSupport.tomlString).joined(separator: ", "))]

            [grpc]
              address = \(DaemonSupport.tomlString(directory + "/containerd.sock"))

            [ttrpc]
              address = \(DaemonSupport.tomlString(directory + "/containerd.sock.ttrpc"))

            [debug]
              address = ""
              level = "debug"

            [metrics]
              address = ""

            """
    }
}
