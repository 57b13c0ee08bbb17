import Foundation
import OCIDistribution

/// A referrers list: the descriptors of the manifests whose `subject` is one digest, as the OCI
/// referrers API answers it (an image index). Read from an upstream's referrers answer or from a
/// referrers-tag-schema index (`sha256-<hex>`), both hostile: descriptors that are not valid are
/// dropped, and the index Wharf sends is always its own serialisation of what is left.
public struct ReferrersIndex: Sendable, Equatable {
    /// One referrer, with the fields the referrers API names: `mediaType`, `digest`, `size`,
    /// `artifactType` and `annotations`. Every value was checked, so none can break a response.
    public struct Descriptor: Sendable, Equatable, Codable {
        public let mediaType: String
        public let digest: String
        public let size: Int64
        public let artifactType: String?
        public let annotations: [String: String]?

        public init(mediaType: String, digest: String, size: Int64, artifactType: String? = nil, annotations: [String: String]? = nil) {
            self.mediaType = mediaType
            self.digest = digest
            self.size = size
            self.artifactType = artifactType
            self.annotations = annotations
        }

        /// A media type by RFC 6838, a `sha256` digest (normalised), a size of at least 0, and an
        /// `artifactType`, if any, that is a media type too; nil otherwise.
        func validated() -> Descriptor? {
            guard MediaType.isValid(self.mediaType), self.size >= 0, let digest = try? Digest(parsing: self.digest) else { return nil }
            if let type = self.artifactType, !MediaType.isValid(type) { return nil }
            return Descriptor(
                mediaType: self.mediaType, digest: digest.description, size: self.size, artifactType: self.artifactType,
                annotations: self.annotations)
        }
    }

    public private(set) var manifests: [Descriptor]

    public init(manifests: [Descriptor]) { self.manifests = manifests }

    /// No referrers.
    public static let empty = ReferrersIndex(manifests: [])

    /// Reads an image index's `manifests`, keeping the valid descriptors. nil when `bytes` is not
    /// a JSON object with a `manifests` array, or names a `mediaType` other than the OCI index's.
    public init?(parsing bytes: [UInt8]) {
        guard let shape = try? JSONDecoder().decode(Shape.self, from: Data(bytes)),
              shape.mediaType == nil || shape.mediaType == MediaType.ociIndex
        else { return nil }
        self.manifests = shape.manifests.compactMap { $0.descriptor?.validated() }
    }

    /// Only the referrers of `artifactType` (the API's `?artifactType=` filter).
    public func filtered(artifactType: String) -> ReferrersIndex {
        ReferrersIndex(manifests: self.manifests.filter { $0.artifactType == artifactType })
    }

    /// The index as sent to clients (`application/vnd.oci.image.index.v1+json`).
    public var json: [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let document = Document(schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: self.manifests)
        return (try? encoder.encode(document)).map(Array.init) ?? Array(#"{"manifests":[],"mediaType":"\#(MediaType.ociIndex)","schemaVersion":2}"#.utf8)
    }

    /// The `artifactType` query parameter: nil (or empty) for no filter, a media type to filter by;
    /// anything else is refused with 400.
    public static func artifactTypeFilter(_ raw: String?) throws(RegistryError) -> String? {
        guard let raw, !raw.isEmpty else { return nil }
        guard MediaType.isValid(raw) else { throw RegistryError(.requestInvalid, "artifactType must be a media type (type/subtype)") }
        return raw
    }

    /// The referrers-tag-schema tag of `subject`: `sha256-<hex>`.
    public static func fallbackTag(of subject: Digest) -> String { "\(subject.algorithm.rawValue)-\(subject.hex)" }

    private struct Shape: Decodable {
        let mediaType: String?
        let manifests: [Lenient]
    }

    /// One entry of `manifests`, nil when it is not a descriptor (decoding it never fails the list).
    private struct Lenient: Decodable {
        let descriptor: Descriptor?
        init(from decoder: any Decoder) { self.descriptor = try? Descriptor(from: decoder) }
    }

    private struct Document: Encodable {
        let schemaVersion: Int
        let mediaType: String
        let manifests: [Descriptor]
    }
}
