import Foundation
import Logging
import Synchronization
import OCIDistribution
import WharfStorage
import WharfUpstream

/// What administrators may do to a running mirror: purge, pin and unpin, warm now.
extension Mirror {
    /// The outcome of ``purge(upstream:repository:reference:)``.
    public enum PurgeOutcome: Sendable {
        /// Removed: tags, manifests, blobs and bytes; blobs kept because shared or in use.
        case purged(tags: Int, manifests: Int, blobs: Int, bytes: Int64, keptShared: Int, keptInUse: Int)
        case notCached
        /// The image (or one of the repository's) is pinned: unpin it first.
        case pinned
    }

    /// Removes `reference` (tag or digest; nil: the whole repository) of `repository` at `upstream`
    /// from the cache. Runs its index scans and writes on a thread of its own.
    public func purge(upstream: String, repository: String, reference: String?) async throws -> PurgeOutcome {
        let purge = CachePurge(index: self.index, store: self.store, fills: self.fills, serving: self.serving, pins: self.pins)
        let result = try await BlockingIO.run { try purge.purge(upstream: upstream, repository: repository, reference: reference) }
        switch result {
        case .success(let r):
            self.logger.notice("purged from the cache", metadata: [
                "upstream": "\(upstream)", "repository": "\(repository)", "reference": "\(reference ?? "*")", "tags": "\(r.tags)",
                "manifests": "\(r.manifests)", "blobs": "\(r.blobs)", "bytes": "\(r.bytes)", "kept-shared": "\(r.keptShared)", "kept-in-use": "\(r.keptInUse)",
            ])
            return .purged(tags: r.tags, manifests: r.manifests, blobs: r.blobs, bytes: r.bytes, keptShared: r.keptShared, keptInUse: r.keptInUse)
        case .failure(.notCached): return .notCached
        case .failure(.pinned): return .pinned
        }
    }

    /// Upstream names, for checking what an administrator names.
    public var upstreamNames: [String] { self.upstreams.map(\.configuration.name) }
}

/// Asks the warm service to run now instead of at its next interval.
public final class WarmTrigger: Sendable {
    private let signal = WakeSignal()
    private let listening = Atomic<Bool>(false)
    public init() {}
    /// Whether a warm service waits for it (set by the service when it starts).
    public var hasListener: Bool {
        get { self.listening.load(ordering: .relaxed) }
        set { self.listening.store(newValue, ordering: .relaxed) }
    }
    /// Wakes the waiting warm service (or makes its next wait return at once).
    public func fire() { self.signal.fire() }
    /// Waits until fired or `timeout` passes.
    public func wait(timeout: Duration) async { await self.signal.wait(timeout: timeout) }
}
