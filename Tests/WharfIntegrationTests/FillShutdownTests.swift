import Foundation
import Logging
import NIOCore
import NIOHTTP1
import OCIDistribution
import Testing
import WharfStorage
import WharfTestSupport
import WharfUpstream
@testable import WharfMirror

/// Fills run in the fills' task group; shutdown waits for them (within the drain bound), cancels the
/// rest and removes their temp files, and a fill asked for after shutdown does not hang its client.
@Suite(.serialized, .timeLimit(.minutes(2)), .tags(.integration))
struct FillShutdownTests {
    /// A mirror of a stalling upstream that serves `blob`, its maintenance not started.
    struct Fixture {
        let upstream = HostileUpstream()
        let blob = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        var digest: Digest { Digest.sha256(of: self.blob) }
        let mirror: Mirror
        let http = UpstreamHTTPClients.make()
        let directory: String

        init() async throws {
            self.directory = try TempDirectory.make("fill-shutdown")
            self.upstream.script("/v2/team/app/blobs/\(Digest.sha256(of: self.blob))", .stall(LoopbackHTTPResponse(status: .ok, body: ByteBuffer(bytes: self.blob))))
            try await self.upstream.start()
            let config = try UpstreamConfiguration(name: "up", url: self.upstream.url)
            var logger = Logger(label: "wharf-test")
            logger.logLevel = .critical
            self.mirror = try Mirror(dataDirectory: self.directory, upstream: config, httpClients: self.http, logger: logger)
        }

        /// Starts the fill of `blob` and waits until half of it (all the stalling upstream sends) is on disk.
        func startFill() async throws -> BlobFill {
            guard case .fill(let following) = try self.mirror.fills.source(for: self.digest, upstream: self.mirror.upstreamChain, repository: "team/app") else {
                throw FixtureError.invalid("the blob was already cached")
            }
            let fill = following.fill
            following.release()
            let half = Int64(self.blob.count / 2)
            let snapshot = await fill.wait(for: .bytes(half))
            guard snapshot.written >= half else { throw FixtureError.invalid("the fill ended early: \(snapshot.phase)") }
            return fill
        }

        var tempFiles: [String] { (try? FileManager.default.contentsOfDirectory(atPath: self.directory + "/tmp")) ?? [] }

        func tearDown() async {
            self.upstream.releaseStalled()
            await self.upstream.stop()
            try? await self.http.shutdown()
            try? FileManager.default.removeItem(atPath: self.directory)
        }
    }

    @Test("shutdown waits for a fill in flight, which finishes, commits and is indexed; later fills are refused, not hung")
    func shutdownWaitsForFill() async throws {
        let f = try await Fixture()
        let maintenance = Task { await f.mirror.runMaintenance(fillDrain: .seconds(60)) }
        do {
            #expect(await eventually { f.mirror.fills.isRunning }, "the fills' run loop never started")
            let fill = try await f.startFill()
            maintenance.cancel()
            #expect(await eventually { f.mirror.fills.hasStopped }, "shutdown never stopped the fills' run loop")
            #expect(f.mirror.fills.inFlight == 1, "the fill did not outlive the start of shutdown")

            // A fill asked for now fails like one the cache cannot keep: its client is relayed, not left waiting.
            let other = Digest.sha256(of: [1, 2, 3])
            #expect(throws: RegistryError.self) { _ = try f.mirror.fills.source(for: other, upstream: f.mirror.upstreamChain, repository: "team/app") }
            do { _ = try f.mirror.fills.source(for: other, upstream: f.mirror.upstreamChain, repository: "team/app") } catch {
                #expect(BlobFills.isCannotKeep(error))
            }

            f.upstream.releaseStalled()
            await maintenance.value  // returns only once the fill has ended
            guard case .complete(let size) = fill.snapshot.phase else { Issue.record("the fill did not complete: \(fill.snapshot.phase)"); return }
            #expect(size == Int64(f.blob.count))
            #expect(try f.mirror.index.blob(f.digest)?.size == Int64(f.blob.count), "the fill was not committed before shutdown returned")
            #expect(FileSystemCalls.fileSize(f.mirror.layout.blobPath(f.digest)) == Int64(f.blob.count))
            #expect(f.mirror.fills.inFlight == 0 && f.tempFiles.isEmpty)
        } catch {
            Issue.record(error)
            maintenance.cancel()
        }
        await f.tearDown()
    }

    @Test("a fill still running at the drain bound is cancelled: its followers see a failure, its temp file is removed")
    func drainBoundCancels() async throws {
        let f = try await Fixture()
        let maintenance = Task { await f.mirror.runMaintenance(fillDrain: .milliseconds(200)) }
        do {
            #expect(await eventually { f.mirror.fills.isRunning }, "the fills' run loop never started")
            let fill = try await f.startFill()
            let follower = Task { await fill.wait(for: .complete) }
            maintenance.cancel()
            await maintenance.value  // the upstream never sends the rest: only the bound ends this
            guard case .failed(let error) = await follower.value.phase else { Issue.record("the fill was not failed"); return }
            #expect(error.status == 503)
            #expect(f.mirror.fills.inFlight == 0 && f.tempFiles.isEmpty)
            #expect(try f.mirror.index.blob(f.digest) == nil)
        } catch {
            Issue.record(error)
            maintenance.cancel()
        }
        await f.tearDown()
    }

    @Test("a fill asked for before the run loop started still runs to the end, and shutdown waits for it")
    func fillBeforeRunLoop() async throws {
        let f = try await Fixture()
        do {
            let fill = try await f.startFill()  // no maintenance yet: the fill runs in a task of its own
            let maintenance = Task { await f.mirror.runMaintenance(fillDrain: .seconds(60)) }
            #expect(await eventually { f.mirror.fills.isRunning }, "the fills' run loop never started")
            maintenance.cancel()
            #expect(await eventually { f.mirror.fills.hasStopped })
            f.upstream.releaseStalled()
            await maintenance.value
            guard case .complete = fill.snapshot.phase else { Issue.record("the fill did not complete: \(fill.snapshot.phase)"); return }
            #expect(try f.mirror.index.blob(f.digest) != nil && f.tempFiles.isEmpty)
        } catch {
            Issue.record(error)
        }
        await f.tearDown()
    }
}
