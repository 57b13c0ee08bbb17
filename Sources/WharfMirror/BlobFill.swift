#if canImport(Glibc)
import Glibc
#endif
import OCIDistribution
import Synchronization
import WharfStorage

/// One in-progress download of a blob into a temp file, which any number of clients follow.
///
/// The bytes go through a ``BlobIngest``; the fill keeps a duplicate of its descriptor, and followers
/// send from further duplicates (sendfile) while the file grows, never past the bytes written (and never the last byte before verification). The descriptor
/// stays valid after the file is renamed into place (or unlinked on failure) and is closed when the
/// last follower lets go of the fill. Its state is a ``FillStateMachine`` behind one lock.
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

    private struct State {
        var machine: FillStateMachine
        var continuations: [FillStateMachine.WaiterID: CheckedContinuation<Snapshot, Never>] = [:]
        var nextWaiter: FillStateMachine.WaiterID = 0
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
    /// A duplicate of the ingest's descriptor, owned by the fill: valid after the ingest commits or
    /// aborts (the file renamed or unlinked), closed with the fill.
    let fd: Int32
    private let state: Mutex<State>
    /// Bytes asked of the upstream with ranged GETs beside this fill (see ``reserveRangedBytes(_:size:)``).
    private let rangedBytes = Atomic<Int64>(0)

    /// A fill of the file `ingest` writes; nil if its descriptor cannot be duplicated.
    init?(digest: Digest, origin: (upstream: String, repository: String), ingest: BlobIngest, now: ContinuousClock.Instant = .now) {
        let fd = dup(ingest.descriptor)
        guard fd >= 0 else { return nil }
        self.digest = digest
        self.origin = origin
        self.fd = fd
        self.state = Mutex(State(machine: FillStateMachine(now: now)))
    }

    deinit { close(self.fd) }

    /// Suspends until `condition` holds or the fill has ended. A cancelled task stops waiting at once
    /// (it gets the snapshot of that moment); the fill goes on.
    public func wait(for condition: Condition) async -> Snapshot {
        let id = self.state.withLock { s in
            defer { s.nextWaiter += 1 }
            return s.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Snapshot, Never>) in
                let ready: Snapshot? = self.state.withLock { s in
                    // A cancellation that came first has set the flag already: do not suspend.
                    if Task.isCancelled { return s.machine.snapshot }
                    switch s.machine.waiterAdded(id, for: condition) {
                    case .resumeNow(let snapshot): return snapshot
                    case .suspend:
                        s.continuations[id] = c
                        return nil
                    }
                }
                if let ready { c.resume(returning: ready) }
            }
        } onCancel: {
            self.execute { $0.waiterCancelled(id) }
        }
    }

    /// A new descriptor for the temp file (or, once published, the blob file), owned by the caller:
    /// lets a follower send the bytes written so far with sendfile.
    public func duplicateDescriptor() -> Int32? {
        let fd = dup(self.fd)
        return fd >= 0 ? fd : nil
    }

    public var snapshot: Snapshot { self.state.withLock { $0.machine.snapshot } }

    /// Ranged upstream GETs beside a fill may bring in at most this share of the blob's size: the
    /// fill is the one full GET, so the upstream sends at most 1.25 × the blob for it.
    static let rangedShare: Int64 = 4

    /// Reserves `count` bytes of ranged upstream reads for this blob of `size` bytes; false once
    /// that would pass a quarter of `size` (the range then follows the fill instead).
    func reserveRangedBytes(_ count: Int64, size: Int64) -> Bool {
        let limit = size / Self.rangedShare
        var current = self.rangedBytes.load(ordering: .relaxed)
        while true {
            guard current + count <= limit else { return false }
            let (exchanged, original) = self.rangedBytes.compareExchange(expected: current, desired: current + count, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    /// Tasks suspended in ``wait(for:)`` now.
    var waiterCount: Int { self.state.withLock { $0.machine.waiterCount } }

    /// One client following the fill, until ``release()`` (called when it has sent all, and when its
    /// connection closes, whichever comes first: a client that went away may be waiting for bytes)
    /// or until it is dropped. A fill with no follower for the orphan grace may be stopped.
    public final class Following: Sendable {
        private let released = Atomic<Bool>(false)

        /// The fill followed.
        public let fill: BlobFill

        fileprivate init(_ fill: BlobFill) { self.fill = fill }

        deinit { self.release() }

        public func release() {
            guard !self.released.exchange(true, ordering: .relaxed) else { return }
            self.fill.detach()
        }
    }

    /// A client starts following the fill (``BlobFills`` attaches whoever finds or starts it).
    func attach() -> Following {
        self.state.withLock { $0.machine.followerAttached() }
        return Following(self)
    }

    private func detach() {
        let now = ContinuousClock.now
        self.state.withLock { $0.machine.followerDetached(now: now) }
    }

    /// True when nobody has followed the fill for the policy's grace and it is slower than its floor.
    func isAbandoned(_ policy: OrphanPolicy, now: ContinuousClock.Instant = .now) -> Bool {
        self.state.withLock { $0.machine.orphanCheck(now: now, policy: policy) } == .stopAbandoned
    }

    // MARK: Producer side

    func started(size: Int64?) { self.execute { $0.started(size: size) } }
    func progressed(to written: Int64) { self.execute { $0.progressed(to: written) } }
    func completed(size: Int64) { self.execute { $0.completed(size: size) } }
    /// No effect on an already verified fill: its bytes stay servable to followers.
    func failed(_ error: RegistryError) { self.execute { $0.failed(error) } }

    /// Feeds one event to the machine under the lock, then resumes the waiters it names, outside it.
    private func execute(_ event: (inout FillStateMachine) -> FillStateMachine.Action) {
        let ready: ([CheckedContinuation<Snapshot, Never>], Snapshot)? = self.state.withLock { s in
            switch event(&s.machine) {
            case .none: return nil
            case .resume(let ids, let snapshot): return (ids.compactMap { s.continuations.removeValue(forKey: $0) }, snapshot)
            }
        }
        guard let (continuations, snapshot) = ready else { return }
        for c in continuations { c.resume(returning: snapshot) }
    }
}
