import Foundation
import Testing
import WharfTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `wharf warm`: images fetched into the cache ahead of demand, per platform, under a bandwidth cap.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct WarmTests {
    @Test("warm caches the chosen platform's blobs only, then all; a bandwidth cap slows it down; a missing image fails the run")
    func warmPlatformsAndRate() async throws {
        let upstream = try UpstreamEnvironment()
        let multi = try upstream.generator.index(
            platforms: [(os: "linux", architecture: "amd64"), (os: "linux", architecture: "arm64")], layerSizes: [600_000], format: .oci)
        try upstream.storage.add(index: multi, repository: "team/multi", tag: "latest")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            let arm = try #require(multi.images.first { $0.platform.architecture == "arm64" })
            let amd = try #require(multi.images.first { $0.platform.architecture == "amd64" })
            let one = try await WharfProcess.run(["warm", "--url", wharf.url, "--platform", "linux/arm64", "team/multi:latest"])
            #expect(one.status == 0, "\(one.output)")
            #expect(one.output.contains("warmed 1/1 image(s): 2 manifest(s), 2/2 blob(s)"), "\(one.output)")
            try await Task.sleep(for: .milliseconds(200))  // the last fill commits just after its last byte
            let cached = wharf.cachedBlobHexes()
            for blob in arm.blobs { #expect(cached.contains(String(blob.digest.dropFirst(7)))) }
            for blob in amd.layers { #expect(!cached.contains(String(blob.digest.dropFirst(7))), "amd64 was not asked for") }

            // All platforms, capped at 400 kB/s: the ~0.6 MB amd64 layer cannot arrive in under ~1 s.
            let started = ContinuousClock.now
            let all = try await WharfProcess.run(["warm", "--url", wharf.url, "--max-rate", "400KB", "team/multi:latest"])
            #expect(all.status == 0, "\(all.output)")
            #expect(ContinuousClock.now - started >= .milliseconds(900), "the cap was not applied")
            try await Task.sleep(for: .milliseconds(200))
            for blob in amd.blobs { #expect(wharf.cachedBlobHexes().contains(String(blob.digest.dropFirst(7)))) }

            let missing = try await WharfProcess.run(["warm", "--url", wharf.url, "team/nothing:1"])
            #expect(missing.status != 0 && missing.output.contains("FAILED"), "\(missing.output)")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }

    @Test("`warm:` in the config: the images are cached with no client asking, and again every interval (a moved tag's new blobs arrive)")
    func scheduledWarmFromConfig() async throws {
        let upstream = try UpstreamEnvironment()
        let first = try upstream.generator.image(layerSizes: [300_000, 40_000], format: .oci)
        try upstream.storage.add(image: first, repository: "team/app", tag: "v1")
        try await upstream.start()
        let work = try TempDirectory.make("warm-config")
        var wharf: WharfProcess?
        do {
            try """
                upstreams:
                  - name: hub
                    url: \(upstream.registry.url)
                    tag-ttl: 1s
                warm:
                  every: 2s
                  images: [team/app:v1, team/missing:1]
                """.write(toFile: work + "/wharf.yaml", atomically: true, encoding: .utf8)
            let started = try await WharfProcess.start(
                upstream: upstream.registry.url, dataDirectory: work + "/data", extraArguments: ["--config", work + "/wharf.yaml"])
            wharf = started
            func cached(_ image: GeneratedImage) -> Bool {
                Set(image.blobs.map(\.hex)).isSubset(of: CacheFiles.blobs(in: started.dataDirectory).keys)
            }
            await eventually(within: .seconds(10), "the first run caches every blob of team/app:v1 without a client") { cached(first) }
            // Its summary and the missing image are logged; the missing one does not stop the run.
            let summary = "warm: warmed 1/2 image(s): 1 manifest(s), 3/3 blob(s)"
            await eventually(within: .seconds(10), "the first run's summary was not logged") { started.child.output().contains(summary) }
            #expect(started.child.output().contains("warm: team/missing:1: 404 MANIFEST_UNKNOWN"))

            // The tag moves upstream; a later run (tag TTL 1 s, interval 2 s) fetches the new image.
            let second = try upstream.generator.image(layerSizes: [250_000], format: .oci)
            try upstream.storage.add(image: second, repository: "team/app", tag: "v1")
            await eventually(within: .seconds(10), "a later run caches the new content of team/app:v1") { cached(second) }
            let later = "warm: warmed 1/2 image(s): 1 manifest(s), 2/2 blob(s)"
            await eventually(within: .seconds(10), "the later run's summary was not logged") { started.child.output().contains(later) }
            #expect(!started.child.output().contains("run=1 [WharfCLI] " + later), "the new content came with a later run")
            #expect(await started.stop() == 0, "a graceful shutdown stops the warm service too")
            wharf = nil
        } catch {
            Issue.record(error)
        }
        if let wharf { await wharf.stop() }
        await upstream.stop()
        try? FileManager.default.removeItem(atPath: work)
    }

    /// The crash this guards against (a task group corrupted by a miscompile, see `Warmer.warm`) shows
    /// only in optimised builds: run it against one too, `WHARF_EXECUTABLE=.build/release/wharf`.
    @Test("warm 50 times in a row and 5 times in a pseudo-terminal: every run exits 0 and reports 3/3 blobs")
    func warmManyTimes() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [60_000, 8_000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/small", tag: "v1")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            let summary = "warmed 1/1 image(s): 1 manifest(s), 3/3 blob(s)"
            var bad: [String] = []
            for run in 1...50 {
                let r = try await WharfProcess.run(["warm", "--url", wharf.url, "team/small:v1"], timeout: .seconds(30))
                if r.status != 0 || !r.output.contains(summary) { bad.append("run \(run): exit \(r.status): \(r.output.prefix(600))") }
            }
            #expect(bad.isEmpty, "\(bad.count) of 50 runs failed; the first: \(bad.prefix(2).joined(separator: "\n"))")

            // On a terminal the bar is drawn, ends at 100% and the summary follows it.
            let command = "\(WharfProcess.executable) warm --url \(wharf.url) team/small:v1"
            for run in 1...5 {
                let r = try await Self.inPseudoTerminal(command)
                #expect(r.status == 0, "pty run \(run): exit \(r.status): \(r.output.prefix(600))")
                #expect(r.output.contains("100%  3/3 blobs") && r.output.contains(summary), "pty run \(run): \(r.output.prefix(600))")
            }
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }

    @Test("warm against a port nobody listens on, or a listener that never answers, fails within seconds, naming the URL")
    func warmUnreachable() async throws {
        let refusedPort = try FreePort.loopback()
        let started = ContinuousClock.now
        let refused = try await WharfProcess.run(["warm", "--url", "http://127.0.0.1:\(refusedPort)", "team/app:v1"], timeout: .seconds(15))
        #expect(ContinuousClock.now - started < .seconds(3), "a refused connection fails at once")
        #expect(refused.status != 0, "\(refused.output)")
        #expect(refused.output.contains("cannot reach a Wharf at http://127.0.0.1:\(refusedPort): connection refused"), "\(refused.output)")

        let listener = try SilentListener()
        defer { listener.close() }
        let silentStarted = ContinuousClock.now
        let silent = try await WharfProcess.run(["warm", "--url", "http://127.0.0.1:\(listener.port)", "team/app:v1"], timeout: .seconds(15))
        #expect(ContinuousClock.now - silentStarted < .seconds(10), "a server that never answers is given up on within seconds")
        #expect(silent.status != 0, "\(silent.output)")
        #expect(silent.output.contains("cannot reach a Wharf at http://127.0.0.1:\(listener.port)"), "\(silent.output)")
    }

    /// Runs `command` under `script`, which gives it a pseudo-terminal as stdout; returns its exit status and output.
    static func inPseudoTerminal(_ command: String) async throws -> (status: Int32, output: String) {
        let child = try ChildProcess.spawn(
            executable: "/usr/bin/script", arguments: ["-qec", command, "/dev/null"],
            outputPath: NSTemporaryDirectory() + "wharf-pty-\(getpid())-\(UUID().uuidString.prefix(8)).log")
        defer { try? FileManager.default.removeItem(atPath: child.outputPath) }
        do {
            let status = try await child.waitForExit(timeout: .seconds(30))
            return (status, child.output())
        } catch {
            await child.terminate(timeout: .seconds(2))
            throw error
        }
    }
}

/// A loopback socket that listens (the kernel completes handshakes) but never accepts or answers.
final class SilentListener: Sendable {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FixtureError.system("socket", errno) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else {
            let code = errno
            Glibc.close(fd)
            throw FixtureError.system("bind/listen", code)
        }
        self.fd = fd
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() { Glibc.close(self.fd) }
}
