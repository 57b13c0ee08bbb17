#if canImport(Glibc)
import AsyncHTTPClient
import NIOHTTP1
import Glibc
#endif
import Logging
import NIOCore
import OCIDistribution
import Synchronization
import WharfStorage
import WharfUpstream

/// Starts at most one upstream download per digest and lets every other request join it.
///
/// A fill runs in its own task: a client that disconnects does not cancel it. The bytes go through a
/// ``BlobIngest``: written to a temp file and hashed as they arrive; only a fill whose size and
/// digest check out is fsynced, renamed into `blobs/` and committed to the index.
public final class BlobFills: Sendable {
    public enum Source: Sendable {
        case cached(BlobRecord)
        case fill(BlobFill)
    }

    private let store: BlobStore
    private let index: CacheIndex
    private let logger: Logger
    private let active = Mutex<[Digest: BlobFill]>([:])
    private let stats: MirrorStats

    private let notifier: Notifier?
    private let orphans = Mutex(BlobFill.OrphanPolicy())

    /// Replaces when fills nobody follows are stopped (tests shorten it).
    public func setOrphanPolicy(_ policy: BlobFill.OrphanPolicy) { self.orphans.withLock { $0 = policy } }

    public init(store: BlobStore, index: CacheIndex, stats: MirrorStats, notifier: Notifier? = nil, logger: Logger) {
        self.notifier = notifier
        self.store = store
        self.index = index
        self.stats = stats
        self.logger = logger
    }

    /// The cached blob, the fill already running for it, or a new fill from `upstream`.
    /// `identity` is whose credentials a new fill uses (the mirror's, or a pass-through client's).
    public func source(
        for digest: Digest, upstream: UpstreamClient, repository: String, identity: UpstreamIdentity = .mirror
    ) throws(RegistryError) -> Source {
        let result: Result<Source, RegistryError> = self.active.withLock { fills in
            if let running = fills[digest] {
                self.stats.followersJoined.add()
                return .success(.fill(running))
            }
            if let record = try? self.index.blob(digest), FileSystemCalls.fileSize(self.store.layout.blobPath(digest)) == record.size {
                return .success(.cached(record))
            }
            let ingest: BlobIngest
            do { ingest = try BlobIngest.begin(digest, store: self.store, index: self.index, hashing: .byCaller) } catch {
                self.logger.error("cannot create temp file", metadata: ["error": "\(error)"])
                return .failure(Self.cannotKeep("\(error)"))
            }
            guard let fill = BlobFill(digest: digest, origin: (upstream.configuration.name, repository), ingest: ingest) else {
                ingest.abort()
                return .failure(Self.cannotKeep("no descriptor left"))
            }
            fills[digest] = fill
            self.stats.fillsStarted.add()
            Task { await self.run(fill, ingest: ingest, upstream: upstream, repository: repository, identity: identity) }
            return .success(.fill(fill))
        }
        return try result.get()
    }

    public var inFlight: Int { self.active.withLock { $0.count } }

    /// True while a fill for `digest` runs (from its start until after its index commit or failure).
    public func isFilling(_ digest: Digest) -> Bool { self.active.withLock { $0[digest] != nil } }

    private func run(_ fill: BlobFill, ingest: BlobIngest, upstream: UpstreamClient, repository: String, identity: UpstreamIdentity) async {
        let digest = fill.digest
        let started = ContinuousClock.now
        var ingest = ingest
        var open = true  // the ingest is neither committed nor aborted yet
        do {
            self.stats.upstreamRequests.add()
            let response = try await upstream.send(.GET, repository: repository, path: "blobs/\(digest)", timeout: .hours(6), as: identity)
            guard response.status == 200, let body = response.body else {
                throw UpstreamErrors.fromStatus(response.status, headers: response.headers, kind: .blob)
            }
            let expected = response.contentLength
            if let expected {
                do { try ingest.expect(size: expected) } catch {
                    self.logger.warning("no room to cache a blob", metadata: ["digest": "\(digest)", "bytes": "\(expected)", "error": "\(error)"])
                    throw Self.cannotKeep("\(error)")  // before any client got a head: they relay instead
                }
            }
            fill.started(size: expected)
            // Small blobs are hashed inline; big ones beside the download (see FillHasher).
            let background = (expected ?? Int64.max) > Self.inlineHashLimit ? FillHasher() : nil
            var hasher = StreamingSHA256()
            for try await chunk in body {
                try chunk.withUnsafeReadableBytes { raw in
                    do { try ingest.append(raw) } catch BlobIngest.Failure.exceedsExpectedSize {
                        throw RegistryError(.blobUnknown, "upstream sent more bytes than announced")
                    } catch {
                        throw RegistryError(.blobUnknown, "cache disk write failed: \(error)")
                    }
                    if background == nil { hasher.update(raw) }
                }
                fill.progressed(to: ingest.written)  // followers send these bytes now; the last one waits for the digest
                if fill.isAbandoned(self.orphans.withLock { $0 }) {
                    self.stats.fillsAbandoned.add()
                    throw RegistryError(.blobUnknown, "no client follows this fill and it is below the throughput floor")
                }
                await background?.submit(chunk)
            }
            if let expected, ingest.written != expected {
                throw RegistryError(.blobUnknown, "upstream body ended after \(ingest.written) of \(expected) bytes")
            }
            let computed = if let background { await background.finalize() } else { hasher.finalize() }
            do { try ingest.verify(computedHex: computed) } catch {
                self.stats.digestMismatches.add()
                throw RegistryError(.blobUnknown, "upstream content does not match digest \(digest)")
            }
            // Verified: followers may send their last byte now. Durability (fsync, rename, index)
            // follows; if it fails the client still got correct bytes, and nothing is indexed.
            fill.completed(size: ingest.written)
            let written = ingest.written
            self.stats.bytesFetched.add(Int(written))
            let (verified, origin) = (ingest, fill.origin)
            open = false
            let outcome = try await BlockingIO.run { try verified.commit(link: origin) }
            self.stats.fillsCompleted.add()
            self.notifier?.emit(.blobFilled(digest: digest.description, size: written, upstream: upstream.configuration.name, repository: repository))
            self.stats.fillFinished(after: ContinuousClock.now - started)
            if case .cached = outcome {
                self.logger.info("blob cached", metadata: [
                    "digest": "\(digest)", "bytes": "\(written)", "duration": "\(ContinuousClock.now - started)",
                ])
            }
        } catch {
            if open { ingest.abort() }
            let failure = UpstreamErrors.from(error, kind: .blob)
            if !(error is RegistryError) || failure.status >= 500 { self.stats.upstreamErrors.add() }
            self.stats.fillsFailed.add()
            self.logger.warning("blob fill failed", metadata: ["digest": "\(digest)", "error": "\(failure)"])
            fill.failed(failure)  // no effect on followers of an already verified fill
        }
        self.active.withLock { fills in
            if fills[digest] === fill { fills[digest] = nil }
        }
    }

    /// The error a fill fails with, before any follower sent a head, when the cache cannot keep the
    /// blob (no temp file, no room for it on disk): followers stream it from the upstream uncached
    /// (``BlobRelay``) instead.
    static func cannotKeep(_ cause: String) -> RegistryError {
        RegistryError(.unavailable, "the cache cannot store this blob right now", detail: ["reason": Self.cannotKeepReason])
    }

    private static let cannotKeepReason = "cache-cannot-keep"

    /// True for the failure of a fill whose blob the cache cannot keep (see ``cannotKeep(_:)``).
    public static func isCannotKeep(_ error: RegistryError) -> Bool { error.detail["reason"] == Self.cannotKeepReason }

    /// Blobs up to this size are hashed on the fill's own task.
    static let inlineHashLimit: Int64 = 1 << 20
}
