#if canImport(Glibc)
import Glibc
#endif
import OCIDistribution
import Synchronization

/// One in-progress download of a blob into a temp file, which any number of clients follow.
///
/// The fill owns the temp file's descriptor; followers send from duplicates of it (sendfile) while it
/// grows, never past the bytes written (and never the last byte before verification). The descriptor
/// stays valid after the file is renamed into place (or unlinked on failure) and is closed when the
/// last follower lets go of the fill.
public final class BlobFill: Sendable {
    public enum Phase: Sendable {
        case connecting
        case streaming(size: Int64?)
        case complete(size: Int64)
        case failed(RegistryError)
    }

    /// What a follower waits for.
    public enum Condition: Sendable {
        case head
        case bytes(Int64)
        case complete
    }

    public struct Snapshot: Sendable {
        public let phase: Phase
        public let written: Int64
    }

    private struct Waiter {
        let condition: Condition
        let continuation: CheckedContinuation<Snapshot, Never>
    }

    private struct State {
        var phase: Phase = .connecting
        var written: Int64 = 0
        var waiters: [Waiter] = []
        /// Clients following the fill now, and since when (and from which byte) it has had none.
        var followers = 0
        var orphanedSince: ContinuousClock.Instant? = .now
        var writtenWhenOrphaned: Int64 = 0
    }

    /// When a fill that no client follows any more is stopped: after `grace` without a follower, if
    /// it brought in less than `floorBytesPerSecond` over that time. A fill nobody waits for is only
    /// worth its upstream connection if it will soon finish; a slow one would hold a pool slot for hours.
    public struct OrphanPolicy: Sendable {
        public var grace: Duration
        public var floorBytesPerSecond: Int64

        public init(grace: Duration = .seconds(30), floorBytesPerSecond: Int64 = 1 << 20) {
            self.grace = grace
            self.floorBytesPerSecond = floorBytesPerSecond
        }
    }

    public let digest: Digest
    /// The upstream and repository the bytes come from: a client asking through another repository
    /// must have that digest confirmed for its own repository before following this fill.
    public let origin: (upstream: String, repository: String)
    let fd: Int32
    let tempPath: String
    private let state = Mutex(State())

    init(digest: Digest, origin: (upstream: String, repository: String), fd: Int32, tempPath: String) {
        self.digest = digest
        self.origin = origin
        self.fd = fd
        self.tempPath = tempPath
    }

    deinit { close(self.fd) }

    /// Suspends until `condition` holds or the fill has ended.
    public func wait(for condition: Condition) async -> Snapshot {
        await withCheckedContinuation { (c: CheckedContinuation<Snapshot, Never>) in
            let ready: Snapshot? = self.state.withLock { s in
                let snap = Snapshot(phase: s.phase, written: s.written)
                if Self.holds(condition, snap) { return snap }
                s.waiters.append(Waiter(condition: condition, continuation: c))
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }

    /// A new descriptor for the temp file (or, once published, the blob file), owned by the caller:
    /// lets a follower send the bytes written so far with sendfile.
    public func duplicateDescriptor() -> Int32? {
        let fd = dup(self.fd)
        return fd >= 0 ? fd : nil
    }

    public var snapshot: Snapshot { self.state.withLock { Snapshot(phase: $0.phase, written: $0.written) } }

    /// One client following the fill, until ``release()`` (called when it has sent all, and when its
    /// connection closes, whichever comes first: a client that went away may be waiting for bytes).
    public final class Following: Sendable {
        private let fill: BlobFill
        private let released = Atomic<Bool>(false)

        fileprivate init(_ fill: BlobFill) { self.fill = fill }

        public func release() {
            guard !self.released.exchange(true, ordering: .relaxed) else { return }
            self.fill.detach()
        }
    }

    /// A client starts following the fill.
    public func attach() -> Following {
        self.state.withLock { s in
            s.followers += 1
            s.orphanedSince = nil
        }
        return Following(self)
    }

    private func detach() {
        self.state.withLock { s in
            s.followers -= 1
            if s.followers == 0 {
                s.orphanedSince = .now
                s.writtenWhenOrphaned = s.written
            }
        }
    }

    /// True when nobody has followed the fill for the policy's grace and it is slower than its floor.
    func isAbandoned(_ policy: OrphanPolicy, now: ContinuousClock.Instant = .now) -> Bool {
        self.state.withLock { s in
            guard s.followers == 0, let since = s.orphanedSince, now - since >= policy.grace else { return false }
            let seconds = max(Double((now - since).components.seconds), 1)
            return Double(s.written - s.writtenWhenOrphaned) / seconds < Double(policy.floorBytesPerSecond)
        }
    }

    // MARK: Producer side

    func started(size: Int64?) { self.update { $0.phase = .streaming(size: size) } }
    func progressed(to written: Int64) { self.update { $0.written = written } }
    func completed(size: Int64) { self.update { $0.phase = .complete(size: size); $0.written = size } }
    func failed(_ error: RegistryError) {
        self.update { s in
            if case .complete = s.phase { return }  // verified bytes stay servable to followers
            s.phase = .failed(error)
        }
    }

    private func update(_ change: (inout State) -> Void) {
        let ready: [(CheckedContinuation<Snapshot, Never>, Snapshot)] = self.state.withLock { s in
            change(&s)
            let snap = Snapshot(phase: s.phase, written: s.written)
            var fire: [(CheckedContinuation<Snapshot, Never>, Snapshot)] = []
            s.waiters.removeAll { w in
                guard Self.holds(w.condition, snap) else { return false }
                fire.append((w.continuation, snap))
                return true
            }
            return fire
        }
        for (c, snap) in ready { c.resume(returning: snap) }
    }

    private static func holds(_ condition: Condition, _ s: Snapshot) -> Bool {
        switch s.phase {
        case .failed, .complete: return true
        case .connecting: return false
        case .streaming:
            switch condition {
            case .head: return true
            case .bytes(let n): return s.written >= n
            case .complete: return false
            }
        }
    }
}
