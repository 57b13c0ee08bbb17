import Foundation
import OCIDistribution
import WharfStorage

/// What the cache holds, as the cache browser shows it: repositories with their cached tags (paged and
/// searchable), and one image in detail. Read from the index only; never asks an upstream.
public struct CacheCatalog: Sendable {
    let index: CacheIndex
    let pins: PinSet

    /// One cached tag of a repository.
    public struct TagSummary: Sendable {
        public let tag: String
        public let digest: Digest
        public let image: ImageSummary
    }

    /// A repository at an upstream and its cached tags (one row per tag, whatever the accept classes).
    public struct Repository: Sendable {
        public let upstream: String
        public let name: String
        public var tags: [TagSummary]
    }

    /// One page of repositories; `next` continues after it (nil at the end).
    public struct Page: Sendable {
        public let repositories: [Repository]
        public let next: String?
    }

    /// What an image (a manifest or an index of them) holds and how much of it is cached.
    public struct ImageSummary: Sendable {
        /// `os/architecture[/variant]` of each image of an index; empty for a single image.
        public var platforms: [String] = []
        /// Bytes of every config and layer the manifests (as far as cached) name.
        public var size: Int64 = 0
        public var cachedBytes: Int64 = 0
        /// Wall-clock seconds of the latest access to any of its cached blobs.
        public var lastPulled: UInt64?
        public var pinned = false
    }

    /// One blob of an image: its role, size and whether it is cached.
    public struct Blob: Sendable {
        public let role: String
        public let digest: Digest
        public let size: Int64
        public let cached: Bool
        public let lastAccess: UInt64?
    }

    /// One manifest of an image, with its blobs (a child of an index carries its platform).
    public struct Manifest: Sendable {
        public let digest: Digest
        public let mediaType: String
        public let platform: String?
        public let cached: Bool
        public let blobs: [Blob]
    }

    /// An image in detail.
    public struct ImageDetail: Sendable {
        public let upstream: String
        public let repository: String
        public let reference: String
        public let digest: Digest
        public let mediaType: String
        public let summary: ImageSummary
        public let manifests: [Manifest]
        /// Tags of the repository that point to it.
        public let tags: [String]
    }

    public init(index: CacheIndex, pins: PinSet) {
        self.index = index
        self.pins = pins
    }

    static let tagsPerRepository = 50

    /// Bytes of the cached blobs the pinned images use.
    public func pinnedBytes() -> Int64 {
        let digests = self.pins.current.reduce(into: Set<Digest>()) { $0.formUnion($1.images.blobDigests(index: self.index, upstream: $1.upstream)) }
        return digests.reduce(0) { $0 + (((try? self.index.blob($1)) ?? nil)?.size ?? 0) }
    }

    /// Up to `limit` repositories whose `upstream/repository:tag` contains `query` (case-insensitive),
    /// after the cursor `after` of an earlier page.
    public func page(query: String, after: String?, limit: Int = 25) -> Page {
        let needle = query.lowercased()
        var cursor = after.flatMap(Self.decodeCursor)
        var repositories: [Repository] = []
        var lastKept: [UInt8]?
        var seen = Set<String>()
        scan: while true {
            guard let batch = try? self.index.tagEntries(after: cursor, limit: 500, matching: { e in
                needle.isEmpty || "\(e.upstream)/\(e.repository):\(e.tag)".lowercased().contains(needle)
            }) else { break }
            for entry in batch.entries {
                if repositories.last.map({ $0.upstream != entry.upstream || $0.name != entry.repository }) ?? true {
                    if repositories.count == limit { break scan }
                    repositories.append(Repository(upstream: entry.upstream, name: entry.repository, tags: []))
                    seen = []
                }
                lastKept = entry.key
                let last = repositories.count - 1
                guard repositories[last].tags.count < Self.tagsPerRepository, seen.insert(entry.tag).inserted else { continue }
                repositories[last].tags.append(TagSummary(
                    tag: entry.tag, digest: entry.record.digest,
                    image: self.summary(of: entry.record.digest, upstream: entry.upstream, repository: entry.repository, tag: entry.tag)))
            }
            guard let next = batch.next else {
                return Page(repositories: repositories, next: nil)
            }
            cursor = next
        }
        return Page(repositories: repositories, next: lastKept.map(Self.encodeCursor))
    }

    /// The image `reference` (a tag or a digest) of `repository` at `upstream`, if its manifest is cached.
    public func detail(upstream: String, repository: String, reference: String) -> ImageDetail? {
        let digest: Digest
        if let d = try? Digest(parsing: reference) {
            digest = d
        } else {
            let classes = PinnedImages.acceptClasses
            guard let record = classes.lazy.compactMap({ (try? self.index.tag(upstream: upstream, repository: repository, tag: reference, acceptClass: $0)) ?? nil }).first
            else { return nil }
            digest = record.digest
        }
        guard let top = (try? self.index.manifest(digest)) ?? nil else { return nil }
        let shape = Self.shape(top.bytes)
        var manifests: [Manifest] = []
        if let children = shape.manifests {
            manifests.append(Manifest(digest: digest, mediaType: top.mediaType, platform: nil, cached: true, blobs: []))
            for child in children {
                guard let d = child.digest.flatMap({ try? Digest(parsing: $0) }) else { continue }
                let cached = (try? self.index.manifest(d)) ?? nil
                manifests.append(Manifest(
                    digest: d, mediaType: child.mediaType ?? "", platform: child.platform?.text, cached: cached != nil,
                    blobs: cached.map { self.blobs(of: Self.shape($0.bytes)) } ?? []))
            }
        } else {
            manifests.append(Manifest(digest: digest, mediaType: top.mediaType, platform: nil, cached: true, blobs: self.blobs(of: shape)))
        }
        let tags = (try? self.index.tagEntries(after: nil, limit: 200, matching: { $0.upstream == upstream && $0.repository == repository && $0.record.digest == digest }))?
            .entries.map(\.tag) ?? []
        return ImageDetail(
            upstream: upstream, repository: repository, reference: reference, digest: digest, mediaType: top.mediaType,
            summary: self.summary(of: digest, upstream: upstream, repository: repository, tag: (try? Digest(parsing: reference)) == nil ? reference : nil),
            manifests: manifests, tags: Array(Set(tags)).sorted())
    }

    /// Platforms, sizes, last access and pin of the image `digest`.
    func summary(of digest: Digest, upstream: String, repository: String, tag: String?) -> ImageSummary {
        var summary = ImageSummary()
        guard let top = (try? self.index.manifest(digest)) ?? nil else { return summary }
        let shape = Self.shape(top.bytes)
        var images: [Shape] = []
        if let children = shape.manifests {
            for child in children {
                if let p = child.platform?.text { summary.platforms.append(p) }
                if let d = child.digest.flatMap({ try? Digest(parsing: $0) }), let m = (try? self.index.manifest(d)) ?? nil { images.append(Self.shape(m.bytes)) }
            }
        } else {
            images = [shape]
        }
        for blob in images.flatMap({ self.blobs(of: $0) }) {
            summary.size += blob.size
            if blob.cached { summary.cachedBytes += blob.size }
            if let a = blob.lastAccess { summary.lastPulled = max(summary.lastPulled ?? 0, a) }
        }
        summary.pinned = self.pins.current.contains { pin in
            pin.upstream == upstream && pin.images.references.contains { r in
                guard r.repository == repository else { return false }
                switch r.reference {
                case .digest(let d): return d == digest
                case .tag(let t): return t.value == tag
                }
            }
        }
        return summary
    }

    private func blobs(of shape: Shape) -> [Blob] {
        let described = (shape.config.map { [("config", $0)] } ?? []) + (shape.layers ?? []).map { ("layer", $0) }
        return described.compactMap { role, d in
            guard let digest = d.digest.flatMap({ try? Digest(parsing: $0) }) else { return nil }
            let record = (try? self.index.blob(digest)) ?? nil
            return Blob(role: role, digest: digest, size: record?.size ?? max(0, d.size ?? 0), cached: record != nil, lastAccess: record?.lastAccess)
        }
    }

    struct Platform: Decodable {
        let os: String?
        let architecture: String?
        let variant: String?
        var text: String? {
            guard let os, let architecture else { return nil }
            return [os, architecture, variant].compactMap { $0 }.joined(separator: "/")
        }
    }
    struct Descriptor: Decodable {
        let digest: String?
        let mediaType: String?
        let size: Int64?
        let platform: Platform?
    }
    struct Shape: Decodable {
        let config: Descriptor?
        let layers: [Descriptor]?
        let manifests: [Descriptor]?
    }

    static func shape(_ bytes: [UInt8]) -> Shape {
        (try? JSONDecoder().decode(Shape.self, from: Data(bytes))) ?? Shape(config: nil, layers: nil, manifests: nil)
    }

    static func encodeCursor(_ key: [UInt8]) -> String { key.map { String(format: "%02x", $0) }.joined() }

    static func decodeCursor(_ text: String) -> [UInt8]? {
        guard text.count.isMultiple(of: 2), text.count <= 1024 else { return nil }
        var out: [UInt8] = []
        var i = text.startIndex
        while i < text.endIndex {
            let j = text.index(i, offsetBy: 2)
            guard let byte = UInt8(text[i..<j], radix: 16) else { return nil }
            out.append(byte)
            i = j
        }
        return out
    }
}
