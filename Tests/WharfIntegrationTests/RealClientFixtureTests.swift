import Foundation
import Testing
import WharfTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Proves the ``DockerDaemon`` and ``ContainerdDaemon`` fixtures: real dockerd 20.10 and
/// containerd 1.6 pull generated images from a plain, auth-less Distribution registry
/// used directly as their mirror, and leave nothing behind.
@Suite(.serialized, .timeLimit(.minutes(10)), .tags(.integration, .realClients, .needsRoot))
struct RealClientFixtureTests {
    /// An auth-less Distribution 2.8 seeded with generated images.
    final class SeededRegistry: Sendable {
        let directory: String
        let generator: ImageGenerator
        let storage: RegistryStorage
        let registry: RegistryProcess

        init() throws {
            directory = try TempDirectory.make("real-client")
            generator = try ImageGenerator(directory: directory + "/gen", seed: UInt64.random(in: 1...UInt64.max))
            storage = RegistryStorage(root: directory + "/storage")
            registry = RegistryProcess(storageRoot: directory + "/storage", tokenServer: nil)
        }

        func stop() async {
            try? await registry.stop()
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// Live processes (other than this one) whose command line mentions `directory`.
    static func processes(mentioning directory: String) -> [String] {
        let me = ProcessInfo.processInfo.processIdentifier
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> String? in
            guard let pid = Int32(entry), pid != me,
                let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")"),
                !stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
            else { return nil }
            let cmdline = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            return cmdline.contains(directory + "/") ? "\(pid): \(cmdline)" : nil
        }
    }

    /// Mount points (in this namespace) at or below `directory`.
    static func mounts(below directory: String) -> [String] {
        let text = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { return nil }
            let point = String(fields[4])
            return point == directory || point.hasPrefix(directory + "/") ? point : nil
        }
    }

    @Test("dockerd pulls a Docker Hub image through registry-mirrors; digests and image ID match the seed")
    func dockerdPullsThroughMirror() async throws {
        let upstream = try SeededRegistry()
        let image = try upstream.generator.image(layerSizes: [200_000, 3_000], format: .dockerSchema2)
        try upstream.storage.add(image: image, repository: "library/fixture", tag: "1.0")
        let ociImage = try upstream.generator.image(layerSizes: [50_000], format: .oci)
        try upstream.storage.add(image: ociImage, repository: "team/ocifixture", tag: "v2")
        try await upstream.registry.start()

        var daemon: DockerDaemon?
        do {
            let docker = try DockerDaemon(registryMirrors: [upstream.registry.url])
            daemon = docker
            let clock = ContinuousClock()
            let started = clock.now
            try await docker.start()
            print("dockerd ready after \(clock.now - started)")

            // Short name: dockerd expands it to docker.io/library/fixture.
            let pulled = try await docker.pull("fixture:1.0")
            #expect(pulled.status == 0, "docker pull failed: \(pulled.output)\n--- dockerd log tail:\n\(docker.log().suffix(4000))")
            #expect(try await docker.repoDigests("fixture:1.0") == ["fixture@\(image.manifest.digest)"])
            #expect(try await docker.imageID("fixture:1.0") == image.config.digest)

            // An OCI manifest in a two-component Docker Hub repository, fully qualified.
            let oci = try await docker.pull("docker.io/team/ocifixture:v2")
            #expect(oci.status == 0, "docker pull failed: \(oci.output)")
            #expect(try await docker.repoDigests("team/ocifixture:v2") == ["team/ocifixture@\(ociImage.manifest.digest)"])
            #expect(try await docker.imageID("team/ocifixture:v2") == ociImage.config.digest)

            // The requests really went to the mirror, the classic way (no ns).
            try await Task.sleep(for: .milliseconds(200))
            let log = try upstream.registry.accessLog()
            #expect(log.contains { $0.method == "GET" && $0.path == "/v2/" })
            #expect(log.contains { $0.method == "HEAD" && $0.path == "/v2/library/fixture/manifests/1.0" && $0.status == 200 })
            for blob in image.blobs + ociImage.blobs {
                #expect(log.contains { $0.method == "GET" && $0.path.hasSuffix("/blobs/\(blob.digest)") && $0.status == 200 })
            }
            #expect(!log.contains { $0.path.contains("ns=") })

            // A missing image fails (the fallback to Docker Hub is unreachable).
            let missing = try await docker.pull("fixture:does-not-exist")
            #expect(missing.status != 0)
        } catch {
            Issue.record(error, "dockerd log tail:\n\(daemon?.log().suffix(4000) ?? "")")
        }
        if let daemon {
            let pid = daemon.pid
            let containerdPID = daemon.managedContainerdPID
            let stopStarted = ContinuousClock.now
            await daemon.stop()
            print("dockerd stopped in \(ContinuousClock.now - stopStarted), status \(daemon.exitStatus.map(String.init) ?? "nil")")
            #expect(!FileManager.default.fileExists(atPath: daemon.directory))
            #expect(Self.processes(mentioning: daemon.directory) == [])
            #expect(Self.mounts(below: daemon.directory) == [])
            for pid in [pid, containerdPID].compactMap({ $0 }) {
                #expect(kill(pid, 0) != 0 || Self.isZombie(pid), "pid \(pid) still alive")
            }
            #expect(!daemon.log().isEmpty, "the log survives stop()")
        }
        await upstream.stop()
    }

    @Test("containerd pulls docker.io and ghcr.io images through hosts.toml; requests carry ns")
    func containerdPullsThroughHostsToml() async throws {
        let upstream = try SeededRegistry()
        let image = try upstream.generator.image(layerSizes: [150_000], format: .dockerSchema2)
        try upstream.storage.add(image: image, repository: "library/fixture", tag: "1.0")
        let index = try upstream.generator.index(
            platforms: [(os: "linux", architecture: "amd64"), (os: "linux", architecture: "arm64")], layerSizes: [20_000],
            format: .oci)
        try upstream.storage.add(index: index, repository: "owner/app", tag: "1")
        try await upstream.registry.start()

        var daemon: ContainerdDaemon?
        do {
            let containerd = try ContainerdDaemon()
            daemon = containerd
            let clock = ContinuousClock()
            let started = clock.now
            try await containerd.start()
            print("containerd ready after \(clock.now - started)")
            try containerd.configureMirror(registries: ["docker.io", "ghcr.io"], mirror: upstream.registry.url)
            #expect(FileManager.default.fileExists(atPath: containerd.hostsDirectory + "/ghcr.io/hosts.toml"))

            let hub = try await containerd.pull("docker.io/library/fixture:1.0")
            #expect(hub.status == 0, "ctr pull failed: \(hub.output)\n--- containerd log tail:\n\(containerd.log().suffix(4000))")
            #expect(try await containerd.imageDigest("docker.io/library/fixture:1.0") == image.manifest.digest)

            let ghcr = try await containerd.pull("ghcr.io/owner/app:1", extraArguments: ["--platform", "linux/amd64"])
            #expect(ghcr.status == 0, "ctr pull failed: \(ghcr.output)")
            #expect(try await containerd.imageDigest("ghcr.io/owner/app:1") == index.index.digest)
            #expect(try await containerd.imageDigest("ghcr.io/owner/app:404") == nil)

            try await Task.sleep(for: .milliseconds(200))
            let log = try upstream.registry.accessLog()
            #expect(log.contains { $0.method == "HEAD" && $0.path == "/v2/library/fixture/manifests/1.0?ns=docker.io" })
            #expect(log.contains { $0.method == "HEAD" && $0.path == "/v2/owner/app/manifests/1?ns=ghcr.io" })
            let amd64 = try #require(index.images.first { $0.platform.architecture == "amd64" })
            for blob in image.blobs {
                #expect(log.contains { $0.method == "GET" && $0.path == "/v2/library/fixture/blobs/\(blob.digest)?ns=docker.io" })
            }
            for blob in amd64.blobs {
                #expect(log.contains { $0.method == "GET" && $0.path == "/v2/owner/app/blobs/\(blob.digest)?ns=ghcr.io" })
            }
            #expect(!log.contains { $0.path.contains("/v2/") && $0.path != "/v2/" && !$0.path.contains("ns=") })

            // removeImage + sync GC: the next pull fetches the blobs again.
            let before = log.filter { $0.method == "GET" && $0.path.contains("/blobs/") }.count
            #expect(try await containerd.removeImage("docker.io/library/fixture:1.0") == 0)
            #expect(try await containerd.imageDigest("docker.io/library/fixture:1.0") == nil)
            let again = try await containerd.pull("docker.io/library/fixture:1.0")
            #expect(again.status == 0, "ctr pull failed: \(again.output)")
            try await Task.sleep(for: .milliseconds(200))
            let after = try upstream.registry.accessLog().filter { $0.method == "GET" && $0.path.contains("/blobs/") }.count
            #expect(after == before + image.blobs.count)
        } catch {
            Issue.record(error, "containerd log tail:\n\(daemon?.log().suffix(4000) ?? "")")
        }
        if let daemon {
            let pid = daemon.pid
            let stopStarted = ContinuousClock.now
            await daemon.stop()
            print("containerd stopped in \(ContinuousClock.now - stopStarted), status \(daemon.exitStatus.map(String.init) ?? "nil")")
            #expect(!FileManager.default.fileExists(atPath: daemon.directory))
            #expect(Self.processes(mentioning: daemon.directory) == [])
            #expect(Self.mounts(below: daemon.directory) == [])
            if let pid { #expect(kill(pid, 0) != 0 || Self.isZombie(pid), "pid \(pid) still alive") }
        }
        await upstream.stop()
    }

    @Test("two dockerd and two containerd instances run side by side and each pulls on its own")
    func concurrentInstances() async throws {
        let upstream = try SeededRegistry()
        let image = try upstream.generator.image(layerSizes: [100_000], format: .dockerSchema2)
        try upstream.storage.add(image: image, repository: "library/fixture", tag: "1.0")
        try await upstream.registry.start()

        var dockers: [DockerDaemon] = []
        var containerds: [ContainerdDaemon] = []
        do {
            for _ in 0..<2 {
                dockers.append(try DockerDaemon(registryMirrors: [upstream.registry.url]))
                containerds.append(try ContainerdDaemon())
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for docker in dockers { group.addTask { try await docker.start() } }
                for containerd in containerds { group.addTask { try await containerd.start() } }
                try await group.waitForAll()
            }
            for containerd in containerds {
                try containerd.configureMirror(registries: ["docker.io"], mirror: upstream.registry.url)
            }
            let results = try await withThrowingTaskGroup(of: (Int32, String).self) { group in
                for docker in dockers { group.addTask { try await docker.pull("library/fixture:1.0") } }
                for containerd in containerds { group.addTask { try await containerd.pull("docker.io/library/fixture:1.0") } }
                var collected: [(Int32, String)] = []
                for try await result in group { collected.append(result) }
                return collected
            }
            for (status, output) in results { #expect(status == 0, "pull failed: \(output)") }
            for docker in dockers { #expect(try await docker.imageID("fixture:1.0") == image.config.digest) }
            for containerd in containerds {
                #expect(try await containerd.imageDigest("docker.io/library/fixture:1.0") == image.manifest.digest)
            }

            // Stopping one dockerd leaves the other working.
            await dockers[0].stop()
            #expect(try await dockers[1].repoDigests("fixture:1.0") == ["fixture@\(image.manifest.digest)"])
        } catch {
            Issue.record(error)
        }
        for docker in dockers {
            await docker.stop()
            #expect(!FileManager.default.fileExists(atPath: docker.directory))
            #expect(Self.processes(mentioning: docker.directory) == [])
        }
        for containerd in containerds {
            await containerd.stop()
            #expect(!FileManager.default.fileExists(atPath: containerd.directory))
            #expect(Self.processes(mentioning: containerd.directory) == [])
        }
        await upstream.stop()
    }

    @Test("stop() cleans up after the daemons were SIGKILLed")
    func cleanupAfterKill() async throws {
        let docker = try DockerDaemon(registryMirrors: ["http://127.0.0.1:1"])
        let containerd = try ContainerdDaemon()
        do {
            try await docker.start()
            try await containerd.start()
            let dockerPID = try #require(docker.pid)
            let containerdPID = try #require(containerd.pid)
            #expect(docker.managedContainerdPID != nil)
            #expect(!Self.processes(mentioning: docker.directory).isEmpty)
            kill(dockerPID, SIGKILL)
            kill(containerdPID, SIGKILL)
            try await Task.sleep(for: .milliseconds(100))
        } catch {
            Issue.record(error, "logs:\n\(docker.log().suffix(2000))\n\(containerd.log().suffix(2000))")
        }
        await docker.stop()
        await containerd.stop()
        for directory in [docker.directory, containerd.directory] {
            #expect(!FileManager.default.fileExists(atPath: directory))
            #expect(Self.processes(mentioning: directory) == [])
            #expect(Self.mounts(below: directory) == [])
        }
    }

    @Test("the fixtures write their config where documented and reject bad input")
    func configurationFiles() async throws {
        let docker = try DockerDaemon(
            registryMirrors: ["http://127.0.0.1:1"], insecureRegistries: ["127.0.0.1:1"],
            extraConfig: ["max-concurrent-downloads": "1", "log-level": "\"info\""])
        let data = try Data(contentsOf: URL(fileURLWithPath: docker.daemonConfigPath))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(json["registry-mirrors"] as? [String] == ["http://127.0.0.1:1"])
        #expect(json["insecure-registries"] as? [String] == ["127.0.0.1:1"])
        #expect(json["max-concurrent-downloads"] as? Int == 1)
        #expect(json["log-level"] as? String == "info")
        #expect(json["storage-driver"] as? String == "vfs")
        #expect((json["data-root"] as? String)?.hasPrefix(docker.directory + "/") == true)
        #expect(docker.directory.hasPrefix("/tmp/wd-"))
        #expect(docker.socketPath.utf8.count < 100)
        await docker.stop()
        #expect(!FileManager.default.fileExists(atPath: docker.directory))
        #expect(throws: FixtureError.self) { try DockerDaemon(registryMirrors: [], extraConfig: ["debug": "yes please"]) }

        let containerd = try ContainerdDaemon()
        try containerd.configureMirror(registries: ["localhost:5000", "_default"], mirror: "http://127.0.0.1:1", capabilities: ["pull"])
        let toml = try String(contentsOfFile: containerd.hostsDirectory + "/localhost_5000_/hosts.toml", encoding: .utf8)
        #expect(toml == "[host.\"http://127.0.0.1:1\"]\n  capabilities = [\"pull\"]\n")
        #expect(FileManager.default.fileExists(atPath: containerd.hostsDirectory + "/_default/hosts.toml"))
        #expect(throws: FixtureError.self) { try containerd.configureMirror(registries: ["../x"], mirror: "http://127.0.0.1:1") }
        await containerd.stop()
        #expect(!FileManager.default.fileExists(atPath: containerd.directory))
        #expect(ContainerdDaemon.hostDirectoryName("docker.io") == "docker.io")
        #expect(ContainerdDaemon.hostDirectoryName("[::1]:5000") == "[::1]_5000_")
    }

    static func isZombie(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return true }
        return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }
}
