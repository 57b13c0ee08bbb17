import Foundation

/// An OCI 1.1 artifact written by ``ImageGenerator``: a manifest with `artifactType` and a `subject`
/// (a cosign signature, an attestation, an SBOM), its empty config and its one payload blob.
public struct GeneratedArtifact: Sendable {
    public let manifest: GeneratedBlob
    public let artifactType: String
    /// The manifest's own annotations (a referrers list repeats them).
    public let annotations: [String: String]
    /// The empty config (`{}`) and the payload.
    public let blobs: [GeneratedBlob]
}

extension ImageGenerator {
    /// The OCI empty descriptor's media type (`{}` as a config).
    public static let emptyMediaType = "application/vnd.oci.empty.v1+json"

    /// Writes an artifact manifest referring to `subject`, shaped like what cosign and notation push
    /// in OCI 1.1 mode: `artifactType`, an empty config, one payload layer, `subject`, `annotations`.
    public func artifact(
        subject: GeneratedBlob, artifactType: String, payload: Data, payloadMediaType: String, annotations: [String: String]
    ) throws -> GeneratedArtifact {
        let config = try self.document(Data("{}".utf8), mediaType: Self.emptyMediaType)
        let layer = try self.document(payload, mediaType: payloadMediaType)
        let manifest = try self.writeJSON(
            ArtifactManifestJSON(
                schemaVersion: 2, mediaType: ManifestFormat.oci.manifestMediaType, artifactType: artifactType,
                config: ArtifactDescriptorJSON(config), layers: [ArtifactDescriptorJSON(layer)], subject: ArtifactDescriptorJSON(subject),
                annotations: annotations),
            mediaType: ManifestFormat.oci.manifestMediaType)
        return GeneratedArtifact(manifest: manifest, artifactType: artifactType, annotations: annotations, blobs: [config, layer])
    }

    /// Writes the referrers-tag-schema index for a subject: an OCI index whose `manifests` are the
    /// descriptors of `artifacts` (with their `artifactType` and `annotations`), as clients push it to
    /// the tag `sha256-<hex>` where a registry has no referrers API.
    public func referrersIndex(_ artifacts: [GeneratedArtifact]) throws -> GeneratedBlob {
        try self.writeJSON(
            ReferrersIndexJSON(
                schemaVersion: 2, mediaType: ManifestFormat.oci.indexMediaType,
                manifests: artifacts.map { ArtifactDescriptorJSON($0.manifest, artifactType: $0.artifactType, annotations: $0.annotations) }),
            mediaType: ManifestFormat.oci.indexMediaType)
    }
}

private struct ArtifactDescriptorJSON: Encodable {
    let mediaType: String
    let digest: String
    let size: Int
    let artifactType: String?
    let annotations: [String: String]?

    init(_ blob: GeneratedBlob, artifactType: String? = nil, annotations: [String: String]? = nil) {
        self.mediaType = blob.mediaType
        self.digest = blob.digest
        self.size = blob.size
        self.artifactType = artifactType
        self.annotations = annotations
    }
}

private struct ArtifactManifestJSON: Encodable {
    let schemaVersion: Int
    let mediaType: String
    let artifactType: String
    let config: ArtifactDescriptorJSON
    let layers: [ArtifactDescriptorJSON]
    let subject: ArtifactDescriptorJSON
    let annotations: [String: String]
}

private struct ReferrersIndexJSON: Encodable {
    let schemaVersion: Int
    let mediaType: String
    let manifests: [ArtifactDescriptorJSON]
}
