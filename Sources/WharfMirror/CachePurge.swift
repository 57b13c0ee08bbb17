import OCIDistribution
import WharfStorage

/// Removes an image (a tag, or a manifest by digest) or a whole repository from the cache, as an
/// administrator asks. Tags go; a manifest goes unless another cached tag still leads to it; a blob
/// goes unless another cached image or a pin still uses it, or it is being sent or filled right now.
struct CachePurge: Sendable {
    let index: CacheIndex
    let store: BlobStore
    let fills: BlobFills
    let serving: ServingRegistry
    let pins: PinSet

    /// What a purge removed and what it kept.
    struct Report: Codable, Sendable, Equatable {
        var tags = 0
        var manifests = 0
        var blobs = 0
        var bytes: Int64 = 0
        /// Blobs kept because another cached image or a pin uses them.
        var keptShared = 0
        /// Blobs kept because a client was receiving them or a fill was writing them.
        var keptInUse = 0
    }

    enum Refusal: Error, Equatable {
        case notCached
        case pinned
    }

    /// Purges `reference` (a tag or digest; nil: the whole repository) of `repository` at `upstream`.
    func purge(upstream: String, repository: String, reference: String?) throws -> Result<Report, Refusal> {
        let digestReference = reference.flatMap { try? Digest(parsing: $0) }
        var targets: [CacheIndex.TagEntry] = [], others: [CacheIndex.TagEntry] = []
        var cursor: [UInt8]?
        repeat {
            let batch = try self.index.tagEntries(after: cursor, limit: 10_000)
            for e in batch.entries {
                let mine = e.upstream == upstream && e.repository == repository
                    && (reference == nil || e.tag == reference || e.record.digest == digestReference)
                if mine { targets.append(e) } else { others.append(e) }
            }
            cursor = batch.next
        } while cursor != nil
        var roots = Set(targets.map(\.record.digest))
        if let digestReference, (try self.index.manifest(digestReference)) != nil { roots.insert(digestReference) }
        guard !roots.isEmpty || !targets.isEmpty else { return .failure(.notCached) }
        let pinned = self.pins.current.filter { $0.upstream == upstream }.flatMap(\.images.references).contains { pin in
            guard pin.repository == repository else { return false }
            switch pin.reference {
            case .digest(let d): return roots.contains(d)
            case .tag(let t): return reference == nil || t.value == reference || targets.contains { $0.tag == t.value }
            }
        }
        if pinned { return .failure(.pinned) }

        let purged = try self.closure(of: roots)
        let kept = try self.closure(of: Set(others.map(\.record.digest)))
        let pinnedBlobs = self.pins.current.reduce(into: Set<Digest>()) { $0.formUnion($1.images.blobDigests(index: self.index, upstream: $1.upstream)) }
        var report = Report()
        report.tags = try self.index.removeTags(targets.map(\.key))
        report.manifests = try self.index.removeManifests(Array(purged.manifests.subtracting(kept.manifests)))
        let cachedBlobs = try purged.blobs.filter { try self.index.blob($0) != nil }
        let candidates = cachedBlobs.subtracting(kept.blobs).subtracting(pinnedBlobs)
        report.keptShared = cachedBlobs.count - candidates.count
        let removed = try self.index.removeBlobs(candidates) { digest, _ in
            !self.fills.isFilling(digest) && !self.serving.isServing(digest)
        }
        for (digest, record) in removed {
            if !self.fills.isFilling(digest) { _ = self.store.remove(digest) }  // a new fill renames over it
            report.bytes += record.size
        }
        report.blobs = removed.count
        report.keptInUse = candidates.count - removed.count
        if reference == nil { try self.index.removeLinks(upstream: upstream, repository: repository) }
        return .success(report)
    }

    /// The cached manifests reachable from `roots` (an index's children included) and the blobs they name.
    private func closure(of roots: Set<Digest>) throws -> (manifests: Set<Digest>, blobs: Set<Digest>) {
        var manifests = Set<Digest>(), blobs = Set<Digest>()
        var queue = Array(roots)
        while let digest = queue.popLast() {
            guard !manifests.contains(digest), let manifest = try self.index.manifest(digest) else { continue }
            manifests.insert(digest)
            for child in ManifestResolver.referencedDigests(manifest.bytes) {
                if try self.index.manifest(child) != nil { queue.append(child) } else { blobs.insert(child) }
            }
        }
        return (manifests, blobs)
    }
}
