import Foundation

/// Seeds a CNCF Distribution 2.x filesystem storage root directly, without the push API.
///
/// Layout written under `<root>/docker/registry/v2/`:
/// - `blobs/sha256/<hex[0..<2]>/<hex>/data`: blob bytes (hard-linked from the generator's
///   file when possible, copied otherwise);
/// - `repositories/<repo>/_layers/sha256/<hex>/link`: makes a blob visible in a repository;
/// - `repositories/<repo>/_manifests/revisions/sha256/<hex>/link`: a manifest revision;
/// - `repositories/<repo>/_manifests/tags/<tag>/current/link` and
///   `.../tags/<tag>/index/sha256/<hex>/link`: a tag.
///
/// Every link file holds `sha256:<hex>` with no trailing newline. Seeding is safe while
/// the registry runs as long as no cache is configured (the default of ``RegistryProcess``).
///
/// Because blob data may be a hard link to the generator's file, never modify a `data`
/// file in place; use ``overwriteBlobData(digest:with:)``, which replaces the file.
public struct RegistryStorage: Sendable {
    /// The storage root (`storage.filesystem.rootdirectory`).
    public let root: String

    public init(root: String) {
        self.root = root
    }

    private var base: String { root + "/docker/registry/v2" }

    /// Adds an image: its config and layers as blobs of `repository`, its manifest as a
    /// revision, and `tag` (if given) pointing at the manifest.
    public func add(image: GeneratedImage, repository: String, tag: String?) throws {
        for blob in image.blobs {
            try addBlob(blob, repository: repository)
        }
        try addManifest(image.manifest, repository: repository)
        if let tag {
            try setTag(tag, repository: repository, manifestDigest: image.manifest.digest)
        }
    }

    /// Adds an index (or manifest list): every child image as above (untagged), the index
    /// itself as a revision, and `tag` (if given) pointing at the index.
    public func add(index: GeneratedIndex, repository: String, tag: String?) throws {
        for image in index.images {
            try add(image: image, repository: repository, tag: nil)
        }
        try addManifest(index.index, repository: repository)
        if let tag {
            try setTag(tag, repository: repository, manifestDigest: index.index.digest)
        }
    }

    /// Adds an artifact (a signature, an attestation): its blobs and its manifest as an untagged revision.
    public func add(artifact: GeneratedArtifact, repository: String) throws {
        for blob in artifact.blobs {
            try addBlob(blob, repository: repository)
        }
        try addManifest(artifact.manifest, repository: repository)
    }

    /// Stores `index` (from ``ImageGenerator/referrersIndex(_:)``) as the referrers-tag-schema tag of
    /// `subject`: `sha256-<hex>`, which clients read where a registry has no referrers API.
    public func setReferrersTag(_ index: GeneratedBlob, subject: String, repository: String) throws {
        try addManifest(index, repository: repository)
        try setTag("sha256-" + hex(subject), repository: repository, manifestDigest: index.digest)
    }

    /// Stores a blob and links it into `repository` (`_layers`).
    public func addBlob(_ blob: GeneratedBlob, repository: String) throws {
        try storeBlobData(blob)
        try writeLink(repositoryPath(repository) + "/_layers/sha256/\(hex(blob.digest))/link", digest: blob.digest)
    }

    /// Stores a manifest's bytes and records it as a revision of `repository` (untagged).
    public func addManifest(_ manifest: GeneratedBlob, repository: String) throws {
        try storeBlobData(manifest)
        try writeLink(
            repositoryPath(repository) + "/_manifests/revisions/sha256/\(hex(manifest.digest))/link",
            digest: manifest.digest)
    }

    /// Points `tag` at `manifestDigest` (which should already be a revision of the repository).
    public func setTag(_ tag: String, repository: String, manifestDigest: String) throws {
        let tagPath = repositoryPath(repository) + "/_manifests/tags/\(tag)"
        try writeLink(tagPath + "/current/link", digest: manifestDigest)
        try writeLink(tagPath + "/index/sha256/\(hex(manifestDigest))/link", digest: manifestDigest)
    }

    /// Removes a tag (both its current link and its index history).
    public func removeTag(_ tag: String, repository: String) throws {
        let tagPath = repositoryPath(repository) + "/_manifests/tags/\(tag)"
        if FileManager.default.fileExists(atPath: tagPath) {
            try FileManager.default.removeItem(atPath: tagPath)
        }
    }

    /// Replaces the stored bytes of a blob (for example to serve corrupt content under
    /// the original digest). The file is replaced, not edited, so the generator's copy
    /// it may be hard-linked to stays intact.
    public func overwriteBlobData(digest: String, with data: Data) throws {
        let destination = blobDataPath(digest: digest)
        try FileManager.default.createDirectory(
            atPath: (destination as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: destination), options: .atomic)
    }

    /// Path of a blob's `data` file inside the storage root.
    public func blobDataPath(digest: String) -> String {
        let hex = hex(digest)
        return base + "/blobs/sha256/\(hex.prefix(2))/\(hex)/data"
    }

    // MARK: - Helpers

    private func repositoryPath(_ repository: String) -> String {
        base + "/repositories/" + repository
    }

    private func hex(_ digest: String) -> String {
        precondition(digest.hasPrefix("sha256:"), "only sha256 digests are supported: \(digest)")
        return String(digest.dropFirst("sha256:".count))
    }

    private func storeBlobData(_ blob: GeneratedBlob) throws {
        let destination = blobDataPath(digest: blob.digest)
        let fileManager = FileManager.default
        if fileManager.fileExists(atPath: destination) { return }
        try fileManager.createDirectory(
            atPath: (destination as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        do {
            try fileManager.linkItem(atPath: blob.path, toPath: destination)
        } catch {
            if fileManager.fileExists(atPath: destination) { return }
            try fileManager.copyItem(atPath: blob.path, toPath: destination)
        }
    }

    private func writeLink(_ path: String, digest: String) throws {
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(digest.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
