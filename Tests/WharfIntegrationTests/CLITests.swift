import Foundation
import Logging
import Testing
import WharfAuth
import WharfHTTP
import WharfTestSupport
import WharfText
#if canImport(Glibc)
import Glibc
#endif

/// The `wharf` command line as people meet it, run as the real binary: `--version` and where the
/// version shows, flag errors in the flag's words, unreachable servers, a busy port, "did you mean",
/// the htpasswd prompt, upstream names and `import`, `warm --platform`, and IEC units.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct CLITests {
    /// Nothing listens here; these tests never reach the upstream.
    static let deadUpstream = "http://127.0.0.1:9"

    @Test("--version prints the single version; the startup line, /stats, the dashboard and `wharf stats` show the same; --tag-ttl 5m is accepted")
    func version() async throws {
        // The binary may be a release build made apart from this test bundle (WHARF_EXECUTABLE): its commit
        // is read from its own --version, and everything else must say the same.
        let printed = try await WharfProcess.run(["--version"])
        let line = printed.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(printed.status == 0 && line.hasPrefix("wharf \(WharfVersion.version) (commit ") && line.hasSuffix(")"), "\(printed.output)")
        #expect(WharfVersion.version.split(separator: ".").count == 3)
        let description = String(line.dropFirst("wharf ".count))

        let sandbox = try TempDirectory.make("cli-version")
        defer { try? FileManager.default.removeItem(atPath: sandbox) }
        // Durations on flags take the file's forms (5m), as --edge-ttl does (90s).
        let wharf = try await WharfProcess.start(upstream: Self.deadUpstream, dataDirectory: sandbox + "/data", extraArguments: ["--tag-ttl", "5m"])
        do {
            let log = wharf.child.output()
            #expect(log.contains("starting wharf") && log.contains("version=\"\(description)\""), "\(log.prefix(2000))")
            let stats = try await RawHTTP.request("GET /stats HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(stats.body)) as? [String: Any])
            let version = try #require(json["version"] as? String), commit = try #require(json["commit"] as? String)
            #expect(version == WharfVersion.version && "\(version) (commit \(commit))" == description, "\(json)")
            let page = try await RawHTTP.request("GET / HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(page.bodyText.contains("wharf \(description)"))
            let table = try await WharfProcess.run(["stats", "--url", wharf.host])  // no scheme: http:// is assumed
            #expect(table.status == 0, "\(table.output)")
            #expect(table.output.contains("version ") && table.output.contains(description), "\(table.output)")
        } catch {
            Issue.record(error)
        }
        #expect(await wharf.stop() == 0)
    }

    @Test("a bad flag value is reported under the flag (or the variable) that gave it, before anything is created")
    func flagErrorsNameTheFlag() async throws {
        let sandbox = try TempDirectory.make("cli-flags")
        defer { try? FileManager.default.removeItem(atPath: sandbox) }
        let data = sandbox + "/data"
        let cases: [(arguments: [String], environment: [String: String], says: String)] = [
            (["--upstream", "x"], [:], "--upstream: 'x' is not a URL"),
            ([], ["WHARF_UPSTREAM": "registry.example"], "WHARF_UPSTREAM: 'registry.example' is not a URL"),
            (["--upstream", Self.deadUpstream, "--upstream-name", "Bad_Name"], [:], "--upstream-name: 'Bad_Name' is not a valid name"),
            (["--tag-ttl", "5x"], [:], "--tag-ttl: '5x' is not a duration; write whole seconds or hours, minutes and seconds"),
            (["--edge-ttl", "2d"], [:], "--edge-ttl: '2d' is not a duration"),
            (["--edge-ttl", "48h", "--require-signed-blobs", "--edge-secret", "/nonexistent"], [:], "--edge-ttl: ttl must be between 1s and 24h"),
            (["--max-size", "5 parsecs"], [:], "--max-size: '5 parsecs' is not a size"),
            (["--listen", "nowhere"], [:], "--listen: 'nowhere' is not a valid listen address"),
            (["--low-watermark", "95"], [:], "--low-watermark: low-watermark (95) must be below high-watermark (90)"),
            (["--pin", "Bad:Tag:x"], [:], "--pin: 'Bad:Tag:x' is not a valid pin"),
        ]
        for c in cases {
            let r = try await Self.run(["serve", "--data-dir", data] + c.arguments, environment: c.environment)
            #expect(r.status == 64, "\(c.arguments) \(c.environment): exit \(r.status): \(r.output)")
            #expect(r.output.contains("Error: " + c.says), "\(c.arguments) \(c.environment): \(r.output)")
            #expect(!r.output.contains("upstreams[") && !r.output.contains("data.") && !r.output.contains("edge.ttl"), "no configuration key paths: \(r.output)")
            #expect(!FileManager.default.fileExists(atPath: data), "\(c.arguments): the data folder was created")
        }
        // A key the file set is reported with the file's name.
        let file = sandbox + "/wharf.yaml"
        try """
            upstreams:
              - {name: hub, url: "\(Self.deadUpstream)", default: true}
              - {name: ghcr, url: "http://127.0.0.1:10", namespaces: [ghcr.io]}
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let fromFile = try await Self.run(["serve", "--config", file, "--data-dir", data, "--upstream-ns", "ghcr.io"])
        #expect(fromFile.status == 64, "\(fromFile.output)")
        #expect(fromFile.output.contains("Error: \(file): upstreams[1].namespaces[0]: namespace 'ghcr.io' is already routed to upstream 'hub'"), "\(fromFile.output)")
        #expect(!FileManager.default.fileExists(atPath: data))
    }

    @Test("stats, warm and export with nothing at --url fail within 2 s naming the address and what to check; HOST:PORT means http://; other schemes are refused")
    func unreachableServer() async throws {
        let port = try FreePort.loopback()
        for arguments in [["stats", "--url", "http://127.0.0.1:\(port)"], ["warm", "--url", "127.0.0.1:\(port)", "team/app:v1"],
                          ["export", "--url", "127.0.0.1:\(port)/", "team/app:v1", "-o", NSTemporaryDirectory() + "wharf-cli-\(port).tar"]] {
            let started = ContinuousClock.now
            let r = try await WharfProcess.run(arguments, timeout: .seconds(15))
            #expect(ContinuousClock.now - started < .seconds(2), "\(arguments[0]) took \(ContinuousClock.now - started)")
            #expect(r.status == 1, "\(arguments): \(r.output)")
            #expect(r.output.contains("cannot reach a Wharf at http://127.0.0.1:\(port): connection refused (nothing listens there)"), "\(r.output)")
            #expect(r.output.contains("is `wharf serve` running") && r.output.contains("Check --url"), "\(r.output)")
            #expect(!r.output.contains("errno") && !r.output.contains("HTTPClientError"), "\(r.output)")
        }
        let ftp = try await WharfProcess.run(["stats", "--url", "ftp://127.0.0.1:\(port)"])
        #expect(ftp.status == 64 && ftp.output.contains("--url: scheme 'ftp' is not supported"), "\(ftp.output)")
        let query = try await WharfProcess.run(["warm", "--url", "http://127.0.0.1:\(port)/?x=1", "a/b"])
        #expect(query.status == 64 && query.output.contains("--url: 'http://127.0.0.1:\(port)/?x=1' must not have a query"), "\(query.output)")
    }

    @Test("a listen address in use stops serve naming the address, before the data folder exists; the bind itself names it too")
    func portInUse() async throws {
        let sandbox = try TempDirectory.make("cli-port")
        defer { try? FileManager.default.removeItem(atPath: sandbox) }
        let busy = try SilentListener()
        defer { busy.close() }
        let data = sandbox + "/data"
        let r = try await WharfProcess.run(["serve", "--listen", "127.0.0.1:\(busy.port)", "--upstream", Self.deadUpstream, "--data-dir", data], timeout: .seconds(20))
        #expect(r.status == 1, "\(r.output)")
        #expect(r.output.contains("Error: cannot listen on 127.0.0.1:\(busy.port): address already in use"), "\(r.output)")
        #expect(r.output.contains("--listen HOST:PORT") && !r.output.contains("errno"), "\(r.output)")
        #expect(!FileManager.default.fileExists(atPath: data), "nothing is created before the listener is known to bind")

        // Should the port be taken between that check and the real bind, the server's error names it as well.
        let wharf = try await WharfInstance.start(upstream: Self.deadUpstream)
        let second = RegistryServer(configuration: .init(host: "127.0.0.1", port: wharf.port), mirror: wharf.mirror, logger: Logger(label: "cli-test"))
        do {
            try await second.run()
            Issue.record("a second listener bound a port in use")
        } catch {
            #expect("\(error)".hasPrefix("cannot listen on 127.0.0.1:\(wharf.port): address already in use"), "\(error)")
        }
        await wharf.stop()
    }

    @Test("a word that is no command gets a 'did you mean', not serve's usage")
    func didYouMean() async throws {
        let statz = try await WharfProcess.run(["statz"])
        #expect(statz.status == 64, "\(statz.output)")
        #expect(statz.output.contains("Error: 'statz' is not a command of wharf. Did you mean 'stats'?"), "\(statz.output)")
        #expect(statz.output.contains("Commands: serve, config, htpasswd, warm, export, import, stats, verify, gc"), "\(statz.output)")
        #expect(!statz.output.contains("wharf serve <options>"), "\(statz.output)")
        let nested = try await WharfProcess.run(["config", "chek", "wharf.yaml"])
        #expect(nested.status == 64 && nested.output.contains("'chek' is not a command of wharf config. Did you mean 'check'?"), "\(nested.output)")
        let unknown = try await WharfProcess.run(["frobnicate"])
        #expect(unknown.status == 64 && unknown.output.contains("'frobnicate' is not a command of wharf.\nCommands:"), "\(unknown.output)")
        let help = try await WharfProcess.run(["help", "stats"])
        #expect(help.status == 0 && help.output.contains("USAGE: wharf stats"), "\(help.output)")
    }

    @Test("htpasswd reads one line from a pipe, and on a terminal asks twice with echo off; differing answers print nothing")
    func htpasswdPassword() async throws {
        let sandbox = try TempDirectory.make("cli-htpasswd")
        defer { try? FileManager.default.removeItem(atPath: sandbox) }
        let piped = try await Self.run(["htpasswd", "--cost", "4", "alice"], standardInput: "piped-secret\n")
        #expect(piped.status == 0, "\(piped.output)")
        #expect(try await Self.verifies(line: piped.output, user: "alice", password: "piped-secret", in: sandbox))
        let empty = try await Self.run(["htpasswd", "alice"], standardInput: "")
        #expect(empty.status == 1 && empty.output.contains("no password: standard input is empty"), "\(empty.output)")

        let typed = "typed-Secret-42"
        let terminal = try PseudoTerminal(WharfProcess.executable, ["htpasswd", "--cost", "4", "bob"])
        do {
            try await terminal.read(until: "Password: ")
            terminal.write(typed + "\n")
            try await terminal.read(until: "Password again: ")
            terminal.write(typed + "\n")
            let status = try await terminal.waitForExit()
            let output = terminal.output
            #expect(status == 0, "\(output)")
            #expect(!output.contains(typed), "the password was echoed: \(output)")
            let line = output.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.first { $0.hasPrefix("bob:") } ?? ""
            #expect(try await Self.verifies(line: line, user: "bob", password: typed, in: sandbox), "\(output)")
        } catch {
            Issue.record(error)
        }
        terminal.close()

        let mismatch = try PseudoTerminal(WharfProcess.executable, ["htpasswd", "--cost", "4", "carol"])
        do {
            try await mismatch.read(until: "Password: ")
            mismatch.write("one-password\n")
            try await mismatch.read(until: "Password again: ")
            mismatch.write("another-password\n")
            let status = try await mismatch.waitForExit()
            #expect(status == 1 && mismatch.output.contains("the two passwords differ; nothing printed"), "\(mismatch.output)")
            #expect(!mismatch.output.contains("carol:") && !mismatch.output.contains("one-password") && !mismatch.output.contains("another-password"), "\(mismatch.output)")
        } catch {
            Issue.record(error)
        }
        mismatch.close()
    }

    @Test("--upstream URL names the upstream `default` (--upstream-name overrides); import refuses a name the folder's Wharf does not have")
    func upstreamNamesAndImport() async throws {
        let sandbox = try TempDirectory.make("cli-import")
        defer { try? FileManager.default.removeItem(atPath: sandbox) }
        let bundle = try Self.emptyBundle(in: sandbox)
        let data = sandbox + "/data"
        // A folder no serve has used, without --config: only the names a serve without a file gives.
        let unknown = try await WharfProcess.run(["import", bundle, "--data-dir", data, "--upstream", "hub"])
        #expect(unknown.status == 1 && unknown.output.contains("--upstream 'hub' is not an upstream of a Wharf started without a configuration file"), "\(unknown.output)")
        #expect(unknown.output.contains("pass --config FILE"), "\(unknown.output)")
        #expect(!FileManager.default.fileExists(atPath: data), "a refused import creates nothing")

        let first = try await WharfProcess.start(upstream: Self.deadUpstream, dataDirectory: data)
        #expect(try await Self.upstreamNames(first.port) == ["default"])
        #expect(await first.stop() == 0)
        let renamed = try await WharfProcess.start(upstream: Self.deadUpstream, dataDirectory: data, extraArguments: ["--upstream-name", "central"])
        #expect(try await Self.upstreamNames(renamed.port) == ["central"])
        #expect(await renamed.stop() == 0)

        // The README's old example: Docker Hub's name, on a folder served under another.
        let wrong = try await WharfProcess.run(["import", bundle, "--data-dir", data, "--upstream", "dockerhub"])
        #expect(wrong.status == 1, "\(wrong.output)")
        #expect(wrong.output.contains("--upstream 'dockerhub' is not an upstream of the Wharf serving \(data) (its last start had central)"), "\(wrong.output)")
        let right = try await WharfProcess.run(["import", bundle, "--data-dir", data, "--upstream", "central"])
        #expect(right.status == 0 && right.output.contains("imported 0 image(s)"), "\(right.output)")

        // --config names the upstreams the folder will be served with.
        try "upstreams:\n  - name: hub\n    url: \(Self.deadUpstream)\n".write(toFile: sandbox + "/wharf.yaml", atomically: true, encoding: .utf8)
        let typo = try await WharfProcess.run(["import", bundle, "--data-dir", data, "--config", sandbox + "/wharf.yaml", "--upstream", "hubb"])
        #expect(typo.status == 1 && typo.output.contains("is not an upstream of the configuration \(sandbox)/wharf.yaml (it has hub). Did you mean 'hub'?"), "\(typo.output)")
        let configured = try await WharfProcess.run(["import", bundle, "--data-dir", data, "--config", sandbox + "/wharf.yaml", "--upstream", "hub"])
        #expect(configured.status == 0, "\(configured.output)")
    }

    @Test("warm --platform: a malformed platform is refused before any request; one the index lacks fails the image; sizes are IEC")
    func warmPlatformsAndUnits() async throws {
        let bare = try await WharfProcess.run(["warm", "--platform", "arm64", "team/multi:latest"])
        #expect(bare.status == 64, "\(bare.output)")
        #expect(bare.output.contains("--platform: 'arm64' is not a platform; write OS/ARCH or OS/ARCH/VARIANT") && bare.output.contains("did you mean 'linux/arm64'?"), "\(bare.output)")

        let upstream = try UpstreamEnvironment()
        let multi = try upstream.generator.index(
            platforms: [(os: "linux", architecture: "amd64"), (os: "linux", architecture: "arm64")], layerSizes: [300_000], format: .oci)
        try upstream.storage.add(index: multi, repository: "team/multi", tag: "latest")
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            let missing = try await WharfProcess.run(["warm", "--url", wharf.host, "--platform", "linux/s390x", "team/multi:latest"])
            #expect(missing.status == 1, "\(missing.output)")
            #expect(missing.output.contains("team/multi:latest: FAILED: no linux/s390x in this index; it has linux/amd64, linux/arm64"), "\(missing.output)")

            let warmed = try await WharfProcess.run(["warm", "--url", wharf.host, "--platform", "linux/arm64", "--max-rate", "100MiB", "team/multi:latest"])
            #expect(warmed.status == 0, "\(warmed.output)")
            #expect(warmed.output.contains(/2\/2 blob\(s\), [0-9]+\.[0-9] KiB in/), "\(warmed.output)")

            // A fill is counted just after its last byte reaches the client.
            var table = ""
            await eventually("the fills are counted in KiB") {
                table = (try? await WharfProcess.run(["stats", "--url", wharf.url]).output) ?? ""
                return table.contains(/fetched from upstream +[0-9]+\.[0-9] KiB/)
            }
            let page = try await RawHTTP.request("GET / HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(page.bodyText.contains(" KiB"), "\(page.bodyText)")
            for text in [warmed.output, table, page.bodyText] { #expect(!Self.hasSIUnit(text), "\(text)") }
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()

        let sandbox = try TempDirectory.make("cli-units")
        defer { try? FileManager.default.removeItem(atPath: sandbox) }
        try "data:\n  max-size: 1GB\nwarm:\n  max-rate: 50MB\n  images: [team/app:v1]\n".write(toFile: sandbox + "/wharf.yaml", atomically: true, encoding: .utf8)
        let summary = try await WharfProcess.run(["config", "check", sandbox + "/wharf.yaml"])
        #expect(summary.status == 0, "\(summary.output)")
        #expect(summary.output.contains("max 953.7 MiB") && summary.output.contains("at most 47.7 MiB/s") && summary.output.contains("tag-ttl 5m"), "\(summary.output)")
        #expect(!Self.hasSIUnit(summary.output), "\(summary.output)")
    }

    // MARK: - Helpers

    /// A size with an SI unit (`1.5 MB`, `200 KB`): none of the CLI's outputs may show one.
    static func hasSIUnit(_ text: String) -> Bool { text.contains(/[0-9] ?(kB|KB|MB|GB|TB)\b/) }

    /// Runs `wharf ARGUMENTS` with `environment` added to this process's and `standardInput` piped in.
    static func run(_ arguments: [String], environment: [String: String] = [:], standardInput: String? = nil) async throws -> (status: Int32, output: String) {
        let log = NSTemporaryDirectory() + "wharf-cli-\(getpid())-\(UUID().uuidString.prefix(8))"
        defer {
            try? FileManager.default.removeItem(atPath: log + ".log")
            try? FileManager.default.removeItem(atPath: log + ".in")
        }
        var command = ([WharfProcess.executable] + arguments).map(Self.quoted).joined(separator: " ")
        if let standardInput {
            try standardInput.write(toFile: log + ".in", atomically: true, encoding: .utf8)
            command += " < " + Self.quoted(log + ".in")
        }
        let child = try ChildProcess.spawn(
            executable: "/bin/sh", arguments: ["-c", command],
            environment: ProcessInfo.processInfo.environment.merging(environment) { $1 }, outputPath: log + ".log")
        do {
            let status = try await child.waitForExit(timeout: .seconds(30))
            return (status, child.output())
        } catch {
            await child.terminate(timeout: .seconds(2))
            throw error
        }
    }

    static func quoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    /// Whether the htpasswd `line` accepts `user`/`password` (checked by Wharf's own htpasswd reader).
    static func verifies(line: String, user: String, password: String, in directory: String) async throws -> Bool {
        let path = directory + "/htpasswd-\(user)"
        try (line.trimmingCharacters(in: .whitespacesAndNewlines) + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let file = try HtpasswdFile(path: path, logger: Logger(label: "cli-test"))
        return await file.verify(user: user, password: password, client: "127.0.0.1") == .valid
    }

    /// The names `/stats` lists for the upstreams.
    static func upstreamNames(_ port: Int) async throws -> [String] {
        let stats = try await RawHTTP.request("GET /stats HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: port)
        let json = try JSONSerialization.jsonObject(with: Data(stats.body)) as? [String: Any]
        return (json?["upstreams"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
    }

    /// An OCI image layout tarball with no images (what `import` reads before it checks anything else).
    static func emptyBundle(in directory: String) throws -> String {
        let layout = directory + "/layout"
        try FileManager.default.createDirectory(atPath: layout + "/blobs/sha256", withIntermediateDirectories: true)
        try #"{"imageLayoutVersion":"1.0.0"}"#.write(toFile: layout + "/oci-layout", atomically: true, encoding: .utf8)
        try #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#
            .write(toFile: layout + "/index.json", atomically: true, encoding: .utf8)
        let tar = try Process.run(URL(fileURLWithPath: "/bin/tar"), arguments: ["-cf", directory + "/bundle.tar", "-C", layout, "oci-layout", "index.json", "blobs"])
        tar.waitUntilExit()
        guard tar.terminationStatus == 0 else { throw FixtureError.invalid("tar failed") }
        return directory + "/bundle.tar"
    }
}

/// A child process whose standard input, output and error are a pseudo-terminal this test types into
/// and reads from, as a person at a terminal would.
final class PseudoTerminal: @unchecked Sendable {
    private let master: Int32
    private let process = Process()
    /// Everything the child wrote so far (the terminal's echo included).
    private(set) var output = ""

    init(_ executable: String, _ arguments: [String]) throws {
        let master = Self.libc.openpt(O_RDWR | O_NOCTTY)
        guard master >= 0, Self.libc.grant(master) == 0, Self.libc.unlock(master) == 0, let name = Self.libc.name(master) else {
            throw FixtureError.system("posix_openpt", errno)
        }
        let slave = open(String(cString: name), O_RDWR | O_NOCTTY)
        guard slave >= 0 else { throw FixtureError.system("open pty", errno) }
        _ = fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK)
        self.master = master
        let terminal = FileHandle(fileDescriptor: slave, closeOnDealloc: true)
        self.process.executableURL = URL(fileURLWithPath: executable)
        self.process.arguments = arguments
        self.process.standardInput = terminal
        self.process.standardOutput = terminal
        self.process.standardError = terminal
        try self.process.run()
        try terminal.close()  // the child has its own copies
    }

    /// glibc's pseudo-terminal calls, which the Glibc module does not export (they need _XOPEN_SOURCE).
    private static let libc = (
        openpt: unsafeBitCast(dlsym(nil, "posix_openpt"), to: (@convention(c) (Int32) -> Int32).self),
        grant: unsafeBitCast(dlsym(nil, "grantpt"), to: (@convention(c) (Int32) -> Int32).self),
        unlock: unsafeBitCast(dlsym(nil, "unlockpt"), to: (@convention(c) (Int32) -> Int32).self),
        name: unsafeBitCast(dlsym(nil, "ptsname"), to: (@convention(c) (Int32) -> UnsafeMutablePointer<CChar>?).self)
    )

    /// Reads until the output contains `text` (or throws after `timeout`).
    func read(until text: String, timeout: Duration = .seconds(15)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !self.output.contains(text) {
            guard self.drain(), ContinuousClock.now < deadline else {
                throw FixtureError.timeout("no '\(text)' on the terminal: \(self.output)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    func write(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(self.master, $0.baseAddress, $0.count) }
    }

    /// Waits for the child to exit, reading what it writes meanwhile; returns its exit status.
    func waitForExit(timeout: Duration = .seconds(30)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while self.process.isRunning {
            _ = self.drain()
            guard ContinuousClock.now < deadline else { throw FixtureError.timeout("still running: \(self.output)") }
            try await Task.sleep(for: .milliseconds(10))
        }
        _ = self.drain()  // what it wrote just before exiting
        return self.process.terminationStatus
    }

    /// Stops the child if it still runs and closes the terminal.
    func close() {
        if self.process.isRunning { self.process.terminate() }
        Glibc.close(self.master)
    }

    /// Reads what is there; false once the terminal is closed on the child's side.
    private func drain() -> Bool {
        var open = true
        while true {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = Glibc.read(self.master, &buffer, buffer.count)
            if n > 0 {
                self.output += String(decoding: buffer[..<n], as: UTF8.self)
                continue
            }
            if n < 0, errno == EAGAIN || errno == EINTR { break }
            open = false  // EIO: every copy of the child's side is closed
            break
        }
        return open
    }
}
