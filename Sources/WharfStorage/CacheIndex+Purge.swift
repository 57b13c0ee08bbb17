import LMDB
import OCIDistribution

/// Removing what an operator purges: tags, manifests and a repository's links (blobs go through
/// ``CacheIndex/removeBlobs(_:where:)``, which keeps the byte total right).
extension CacheIndex {
    /// Removes the tag entries with these keys (from ``TagEntry/key``); returns how many existed.
    @discardableResult
    public func removeTags(_ keys: [[UInt8]]) throws -> Int {
        guard !keys.isEmpty else { return 0 }
        return try self.environment.write { txn in try keys.reduce(0) { $0 + (try txn.delete(self.tags, $1) ? 1 : 0) } }
    }

    /// Removes these manifests; returns how many existed.
    @discardableResult
    public func removeManifests(_ digests: [Digest]) throws -> Int {
        guard !digests.isEmpty else { return 0 }
        return try self.environment.write { txn in try digests.reduce(0) { $0 + (try txn.delete(self.manifests, Self.key($1)) ? 1 : 0) } }
    }

    /// Removes every link (confirmed or named) of `repository` at `upstream`: its digests must be
    /// confirmed by the upstream again before they are served through it.
    @discardableResult
    public func removeLinks(upstream: String, repository: String) throws -> Int {
        var prefix = Array(upstream.utf8)
        prefix.append(0)
        prefix.append(contentsOf: repository.utf8)
        prefix.append(0)
        return try self.environment.write { txn in
            var keys: [[UInt8]] = []
            try txn.forEach(self.links, from: prefix) { k, _ in
                guard k.starts(with: prefix) else { return false }
                keys.append(Array(k))
                return true
            }
            for key in keys { try txn.delete(self.links, key) }
            return keys.count
        }
    }
}
