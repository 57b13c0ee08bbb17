import Logging
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfStorage
import WharfUpstream

/// Cross-repository access: a digest is served through repository R only if it was seen in R's
/// manifests (an index link) or the upstream confirms R has it (a `HEAD` as the requesting
/// identity, after which the link is recorded). Knowing a digest is not enough to read a private
/// layer through a public name. Fails closed when the upstream cannot be asked.
public struct RepositoryLinkGate: Sendable {
    public enum Kind: Sendable { case blob, manifest }

    private let index: CacheIndex
    private let stats: MirrorStats
    private let logger: Logger

    public init(index: CacheIndex, stats: MirrorStats, logger: Logger) {
        self.index = index
        self.stats = stats
        self.logger = logger
    }

    /// True when `digest` is already known to belong to `repository` of `upstream`.
    public func isLinked(_ digest: Digest, upstream: UpstreamClient, repository: String) -> Bool {
        (try? self.index.isLinked(digest, upstream: upstream.configuration.name, repository: repository)) ?? false
    }

    /// Returns when `repository` may serve `digest`; throws 404 (`BLOB_UNKNOWN`/`MANIFEST_UNKNOWN`) otherwise.
    public func confirm(
        _ digest: Digest, kind: Kind, upstream: UpstreamClient, repository: String, identity: UpstreamIdentity
    ) async throws(RegistryError) {
        if self.isLinked(digest, upstream: upstream, repository: repository) { return }
        let code: RegistryError.Code = kind == .blob ? .blobUnknown : .manifestUnknown
        let path = (kind == .blob ? "blobs/" : "manifests/") + digest.description
        self.stats.upstreamRequests.add()
        let status: Int
        do {
            let response = try await upstream.send(.HEAD, repository: repository, path: path, timeout: .seconds(15), as: identity)
            status = response.status
        } catch {
            self.logger.notice("cannot confirm a digest for a repository", metadata: ["repository": "\(repository)", "error": "\(error)"])
            throw RegistryError(code, "\(digest) is not known in \(repository) and the upstream cannot confirm it right now")
        }
        guard status == 200 else {
            self.stats.crossRepositoryRefusals.add()
            throw RegistryError(code, "\(digest) is unknown in repository \(repository)")
        }
        do { try self.index.link([digest], upstream: upstream.configuration.name, repository: repository) } catch {
            self.logger.error("index write failed", metadata: ["error": "\(error)"])
        }
    }
}
