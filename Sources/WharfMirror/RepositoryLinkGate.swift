import Logging
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfStorage
import WharfUpstream

/// Cross-repository access: a cached digest is served through repository R only if the upstream
/// served it through R (a fill or a manifest fetched there) or confirms R has it (a `HEAD` as the
/// requesting identity, after which the link is recorded). That one of R's manifests names the
/// digest is not enough: a manifest can name anything (issue #12, bug 3). Knowing a digest is not
/// enough to read a private layer through a public name.
///
/// With the mirror's own identity the question goes on to the upstream's fallbacks when the upstream
/// is unreachable or refuses (``FailoverPolicy``): a fallback's `200` confirms as the upstream's would.
/// When none can be asked, a digest R's manifests name is still served to clients that
/// use the mirror's own upstream identity (open and htpasswd modes, where every client can read all
/// the mirror can: an offline site keeps pulling); pass-through clients fail closed.
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
        _ digest: Digest, kind: Kind, upstream: UpstreamChain, repository: String, identity: UpstreamIdentity
    ) async throws(RegistryError) {
        if self.isLinked(digest, upstream: upstream.primary, repository: repository) { return }
        let code: RegistryError.Code = kind == .blob ? .blobUnknown : .manifestUnknown
        let path = (kind == .blob ? "blobs/" : "manifests/") + digest.description
        var status: Int?
        var failure = ""
        do {
            status = try await upstream.send(.HEAD, repository: repository, path: path, as: identity).response.status
        } catch {
            failure = "\(error)"
        }
        guard let status, status < 500, status != 429 else {
            // The upstream cannot answer (unreachable, 5xx, rate-limited).
            if case .mirror = identity, (try? self.index.isNamed(digest, upstream: upstream.name, repository: repository)) == true {
                return  // named by this repository's manifests, and this client may read all the mirror can
            }
            self.logger.notice("cannot confirm a digest for a repository", metadata: [
                "repository": "\(repository)", "error": "\(status.map { "HTTP \($0)" } ?? failure)",
            ])
            throw RegistryError(code, "\(digest) is not known in \(repository) and the upstream cannot confirm it right now")
        }
        guard status == 200 else {
            self.stats.crossRepositoryRefusals.add()
            throw RegistryError(code, "\(digest) is unknown in repository \(repository)")
        }
        let index = self.index, name = upstream.name
        do { try await BlockingIO.run { try index.link([digest], upstream: name, repository: repository) } } catch {
            self.logger.error("index write failed", metadata: ["error": "\(error)"])
        }
    }
}
