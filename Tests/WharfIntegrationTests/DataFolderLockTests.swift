import Foundation
import Testing
import WharfTestSupport

/// One writer per data folder: `serve`, `import`, `gc` and `verify` hold `<data>/wharf.lock`
/// (flock), so a second one on a folder in use is refused with the holder's PID.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration))
struct DataFolderLockTests {
    /// Nothing listens here; these tests never reach the upstream.
    static let upstream = "http://127.0.0.1:9"

    @Test("a second serve, import, gc and verify on a served folder are refused naming the server's PID; it keeps serving")
    func writersRefusedWhileServed() async throws {
        let sandbox = try TempDirectory.make("lock")
        let data = sandbox + "/data"
        let first = try await WharfProcess.start(upstream: Self.upstream, dataDirectory: data)
        do {
            let refusal = "data folder \(data) is in use by wharf (pid \(first.child.pid)); stop it first"
            let port = try FreePort.loopback()
            let second = try await WharfProcess.run(
                ["serve", "--listen", "127.0.0.1:\(port)", "--upstream", Self.upstream, "--data-dir", data], timeout: .seconds(20))
            #expect(second.status != 0, "second serve: \(second.output)")
            #expect(second.output.contains(refusal), "second serve: \(second.output)")

            let gc = try await WharfProcess.run(["gc", "--data-dir", data])
            #expect(gc.status == 2 && gc.output.contains(refusal), "gc: \(gc.output)")
            #expect(FileManager.default.createFile(atPath: sandbox + "/bundle.tar", contents: Data()))
            let imported = try await WharfProcess.run(["import", sandbox + "/bundle.tar", "--data-dir", data, "--upstream", "test-upstream"])
            #expect(imported.status != 0 && imported.output.contains(refusal), "import: \(imported.output)")
            let verify = try await WharfProcess.run(["verify", "--data-dir", data])
            #expect(verify.status == 2 && verify.output.contains(refusal), "verify: \(verify.output)")

            // Read-only runs need no lock.
            let dryGC = try await WharfProcess.run(["gc", "--data-dir", data, "--dry-run"])
            #expect(dryGC.status == 0, "gc --dry-run: \(dryGC.output)")
            let dryVerify = try await WharfProcess.run(["verify", "--data-dir", data, "--dry-run"])
            #expect(dryVerify.status == 0, "verify --dry-run: \(dryVerify.output)")

            let health = try await RawHTTP.request("GET /healthz HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: first.port)
            #expect(health.status == 200, "the first server keeps serving")
            #expect(first.child.isRunning)
        } catch {
            Issue.record(error)
        }
        #expect(await first.stop() == 0)
        try? FileManager.default.removeItem(atPath: sandbox)
    }

    @Test("the lock goes with its holder: after SIGTERM and after kill -9 a new server starts, and then gc runs")
    func lockReleasedOnExit() async throws {
        let sandbox = try TempDirectory.make("lock")
        let data = sandbox + "/data"
        do {
            let first = try await WharfProcess.start(upstream: Self.upstream, dataDirectory: data)
            #expect(await first.stop() == 0)
            let second = try await WharfProcess.start(upstream: Self.upstream, dataDirectory: data)
            #expect((try? String(contentsOfFile: data + "/wharf.lock", encoding: .utf8)) == "\(second.child.pid)\n")
            try await second.kill()
            let third = try await WharfProcess.start(upstream: Self.upstream, dataDirectory: data)
            #expect(third.child.isRunning)
            #expect(await third.stop() == 0)
            let gc = try await WharfProcess.run(["gc", "--data-dir", data])
            #expect(gc.status == 0, "gc after the server stopped: \(gc.output)")
            #expect(!gc.output.contains("not named by a digest"), "the lock file is no blob: \(gc.output)")
        } catch {
            Issue.record(error)
        }
        try? FileManager.default.removeItem(atPath: sandbox)
    }
}
