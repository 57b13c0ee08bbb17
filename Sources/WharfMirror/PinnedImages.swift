import Foundation
import OCIDistribution
import WharfStorage

/// Images the operator pinned (`--pin REPO:TAG` or `REPO@DIGEST`): their cached blobs are never evicted.
///
/// Resolved from the cache each eviction round: the pinned tag's cached manifest (any accept class),
/// its config and layers, and for an index every cached child manifest's config and layers. A pin
/// whose image was never pulled protects nothing until it is.
public struct PinnedImages: Sendable {
    public struct Reference: Sendable, Hashable {
        public let repository: String
        public let reference: OCIDistribution.Reference
    }

    public let references: [Reference]

    /// Parses `[registry/]repo[:tag|@digest]`; a missing tag means `latest`. `dockerHub` adds `library/`.
    public init(_ raw: [String], dockerHub: Bool) throws {
        self.references = try raw.map { text in
            var rest = Substring(text)
            if let slash = rest.firstIndex(of: "/"), rest[..<slash].contains(where: { $0 == "." || $0 == ":" }) || rest[..<slash] == "localhost" {
                rest = rest[rest.index(after: slash)...]
            }
            var reference = OCIDistribution.Reference.tag(try Tag(parsing: "latest"))
            if let at = rest.firstIndex(of: "@") {
                reference = .digest(try Digest(parsing: rest[rest.index(after: at)...]))
                rest = rest[..<at]
            } else if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
                reference = .tag(try Tag(parsing: rest[rest.index(after: colon)...]))
                rest = rest[..<colon]
            }
            var name = try RepositoryName(parsing: rest)
            if dockerHub { name = name.dockerHubNormalized }
            return Reference(repository: name.value, reference: reference)
        }
    }

    /// Every blob digest the pinned images use, as far as the cache knows them.
    public func blobDigests(index: CacheIndex, upstream: String) -> Set<Digest> {
        var blobs = Set<Digest>()
        for pin in self.references {
            var manifests: [Digest] = []
            switch pin.reference {
            case .digest(let d): manifests = [d]
            case .tag(let t): manifests = Self.acceptClasses.compactMap {
                    (try? index.tag(upstream: upstream, repository: pin.repository, tag: t.value, acceptClass: $0))??.digest
                }
            }
            var seen = Set<Digest>()
            while let digest = manifests.popLast() {
                guard seen.insert(digest).inserted, let manifest = (try? index.manifest(digest)) ?? nil else { continue }
                for child in ManifestResolver.referencedDigests(manifest.bytes) {
                    if (try? index.manifest(child)) ?? nil != nil { manifests.append(child) } else { blobs.insert(child) }
                }
            }
        }
        return blobs
    }

    /// Every accept-class key a tag answer may be stored under.
    static let acceptClasses: [String] = [AcceptSet.all.classKey] + (0...15).map { String($0, radix: 16) }
}
