import Foundation
import Logging
import OCIDistribution
import Testing
import WharfStorage
@testable import WharfMirror

/// ``BlobFill`` executing its state machine's actions: real continuations and task cancellation.
@Suite(.tags(.unit)) struct BlobFillTests {
    /// A fill over a fresh temp file (its ingest aborted at the end).
    static func withFill(_ body: (BlobFill) async throws -> Void) async throws {
        let root = NSTemporaryDirectory() + "wharf-fill-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let layout = CacheLayout(root: root)
        try layout.createDirectories()
        let index = try CacheIndex(directory: layout.indexDirectory)
        let ingest = try BlobIngest.begin(Digest.sha256(of: [1]), store: BlobStore(layout: layout), index: index)
        defer { ingest.abort() }
        let fill = try #require(BlobFill(digest: ingest.digest, origin: ("up", "team/app"), ingest: ingest))
        try await body(fill)
    }

    /// Yields until `fill` has `count` suspended waiters; fails the test after 5 s.
    static func waiters(_ fill: BlobFill, _ count: Int) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(5)
        while fill.waiterCount != count {
            guard ContinuousClock.now < deadline else { return false }
            await Task.yield()
        }
        return true
    }

    @Test("a cancelled wait returns at once with the current snapshot; the fill and its other waiters go on")
    func cancelledWait() async throws {
        try await Self.withFill { fill in
            fill.started(size: 100)
            fill.progressed(to: 30)
            let cancelled = Task { await fill.wait(for: .complete) }
            let other = Task { await fill.wait(for: .bytes(100)) }
            #expect(await Self.waiters(fill, 2), "the waiters never suspended")
            cancelled.cancel()
            let snapshot = await cancelled.value
            #expect(snapshot.written == 30)
            guard case .streaming = snapshot.phase else { Issue.record("the fill ended with the waiter"); return }
            #expect(fill.waiterCount == 1)

            fill.progressed(to: 100)
            fill.completed(size: 100)
            #expect(await other.value.written == 100)
            guard case .complete(100) = fill.snapshot.phase else { Issue.record("the fill did not complete"); return }
        }
    }

    @Test("a wait begun by an already cancelled task does not suspend")
    func waitWhenAlreadyCancelled() async throws {
        try await Self.withFill { fill in
            let started = AsyncStream<Void>.makeStream()
            let task = Task {
                for await _ in started.stream {}  // returns once cancelled
                return await fill.wait(for: .complete)
            }
            task.cancel()
            started.continuation.finish()
            let snapshot = await task.value
            guard case .connecting = snapshot.phase else { Issue.record("unexpected phase"); return }
            #expect(fill.waiterCount == 0)
        }
    }

    @Test("followers keep a fill from being abandoned; the orphan clock starts when the last lets go")
    func followersAndOrphans() async throws {
        try await Self.withFill { fill in
            let policy = BlobFill.OrphanPolicy(grace: .seconds(1), floorBytesPerSecond: 1)
            let a = fill.attach(), b = fill.attach()
            #expect(!fill.isAbandoned(policy, now: .now + .seconds(60)))
            a.release()
            a.release()  // twice counts once
            #expect(!fill.isAbandoned(policy, now: .now + .seconds(60)))
            b.release()
            #expect(fill.isAbandoned(policy, now: .now + .seconds(60)))
            #expect(!fill.isAbandoned(policy, now: .now))
        }
    }

    @Test("a following dropped without release lets go of the fill; one released and then dropped lets go once")
    func droppedFollowing() async throws {
        try await Self.withFill { fill in
            let policy = BlobFill.OrphanPolicy(grace: .seconds(1), floorBytesPerSecond: 1)
            let holder = fill.attach()
            var dropped: BlobFill.Following? = fill.attach()
            dropped = nil
            #expect(dropped == nil)
            var released: BlobFill.Following? = fill.attach()
            released?.release()
            released = nil  // its deinit must not detach a second time
            #expect(released == nil)
            #expect(!fill.isAbandoned(policy, now: .now + .seconds(60)), "one detach too many took the holder's place")
            holder.release()
            #expect(fill.isAbandoned(policy, now: .now + .seconds(60)), "the dropped following still holds the fill")
        }
    }

    @Test("a duplicated descriptor reads what was written, also after the ingest closed its own")
    func duplicateDescriptor() async throws {
        try await Self.withFill { fill in
            let fd = try #require(fill.duplicateDescriptor())
            defer { close(fd) }
            #expect(fcntl(fd, F_GETFD) >= 0)
        }
    }
}
