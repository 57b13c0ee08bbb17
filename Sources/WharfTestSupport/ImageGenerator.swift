import Crypto
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A file written by ``ImageGenerator``: a blob, config or manifest, named by its digest.
public struct GeneratedBlob: Sendable, Hashable {
    /// `sha256:<hex>` of the file's bytes.
    public let digest: String
    /// Size of the file in bytes.
    public let size: Int
    /// Absolute path of the file.
    public let path: String
    /// Media type a descriptor should give for this blob.
    public let mediaType: String

    public init(digest: String, size: Int, path: String, mediaType: String) {
        self.digest = digest
        self.size = size
        self.path = path
        self.mediaType = mediaType
    }

    /// The hex part of ``digest``.
    public var hex: String { String(digest.dropFirst("sha256:".count)) }

    /// Reads the whole file (meant for manifests and configs, not large layers).
    public func data() throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }
}

/// Which manifest family ``ImageGenerator`` writes.
public enum ManifestFormat: Sendable, Hashable {
    /// Docker schema2 manifests and Docker manifest lists.
    case dockerSchema2
    /// OCI image manifests and OCI image indexes.
    case oci

    public var manifestMediaType: String {
        switch self {
        case .dockerSchema2: return "application/vnd.docker.distribution.manifest.v2+json"
        case .oci: return "application/vnd.oci.image.manifest.v1+json"
        }
    }

    public var indexMediaType: String {
        switch self {
        case .dockerSchema2: return "application/vnd.docker.distribution.manifest.list.v2+json"
        case .oci: return "application/vnd.oci.image.index.v1+json"
        }
    }

    public var configMediaType: String {
        switch self {
        case .dockerSchema2: return "application/vnd.docker.container.image.v1+json"
        case .oci: return "application/vnd.oci.image.config.v1+json"
        }
    }

    public var layerMediaType: String {
        switch self {
        case .dockerSchema2: return "application/vnd.docker.image.rootfs.diff.tar.gzip"
        case .oci: return "application/vnd.oci.image.layer.v1.tar+gzip"
        }
    }
}

/// An OS/architecture pair as found in image configs and index entries.
public struct Platform: Sendable, Hashable, CustomStringConvertible {
    public let os: String
    public let architecture: String

    public init(os: String, architecture: String) {
        self.os = os
        self.architecture = architecture
    }

    public var description: String { "\(os)/\(architecture)" }
}

/// A single-platform image written by ``ImageGenerator``.
public struct GeneratedImage: Sendable {
    public let manifest: GeneratedBlob
    public let config: GeneratedBlob
    public let layers: [GeneratedBlob]
    /// `sha256` of each layer's uncompressed tar, in layer order (the config's `diff_ids`).
    public let diffIDs: [String]
    public let platform: Platform
    public let format: ManifestFormat

    /// The config followed by the layers: every blob the manifest references.
    public var blobs: [GeneratedBlob] { [config] + layers }
}

/// A multi-platform index (OCI index or Docker manifest list) and its images.
public struct GeneratedIndex: Sendable {
    public let index: GeneratedBlob
    public let images: [GeneratedImage]
    public let format: ManifestFormat
}

/// Writes deterministic, valid container images (gzip'd tar layers, configs, manifests,
/// indexes) as digest-named files into a directory.
///
/// The content depends only on the seed and on the order of calls: each call draws a
/// fresh sequence number that is mixed into the PRNG, so two calls never produce the
/// same bytes, and two generators with the same seed making the same calls produce
/// identical files. Payloads come from SplitMix64, so they are incompressible and
/// hundreds of MiB generate in seconds. Memory use stays at a few MiB whatever the size.
public struct ImageGenerator: Sendable {
    /// The directory receiving the files (created by `init`).
    public let directory: String
    public let seed: UInt64
    private let sequence: Counter

    private final class Counter: Sendable {
        let next = Mutex<UInt64>(0)
        func take() -> UInt64 { next.withLock { value in defer { value += 1 }; return value } }
    }

    public init(directory: String, seed: UInt64) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.directory = URL(fileURLWithPath: directory).standardizedFileURL.path
        self.seed = seed
        self.sequence = Counter()
    }

    /// Writes a gzip'd tar holding one regular file of `payloadSize` random bytes.
    ///
    /// - Returns: the layer blob and its diffID (`sha256` of the uncompressed tar).
    public func layer(payloadSize: Int, mediaType: String = ManifestFormat.oci.layerMediaType) throws
        -> (blob: GeneratedBlob, diffID: String)
    {
        precondition(payloadSize >= 0 && payloadSize < 1 << 33, "payloadSize must be in 0..<8 GiB (ustar size field)")
        let number = sequence.take()
        var random = SplitMix64(seed: seed, stream: number)
        let temporary = temporaryPath()
        let written = try TarGzip.writeLayer(
            path: temporary, fileName: "payload-\(seed)-\(number).bin", payloadSize: payloadSize
        ) { random.fill($0) }
        let blob = try commit(temporary, digest: written.digest, size: written.size, mediaType: mediaType)
        return (blob, written.diffID)
    }

    /// Writes `size` random bytes with media type `application/octet-stream`.
    public func rawBlob(size: Int) throws -> GeneratedBlob {
        precondition(size >= 0, "size must not be negative")
        var random = SplitMix64(seed: seed, stream: sequence.take())
        let temporary = temporaryPath()
        let file = try HashingFileWriter(path: temporary)
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { chunk.deallocate() }
        var remaining = size
        while remaining > 0 {
            let slice = UnsafeMutableRawBufferPointer(rebasing: chunk[0..<min(chunk.count, remaining)])
            random.fill(slice)
            try file.write(UnsafeRawBufferPointer(slice))
            remaining -= slice.count
        }
        return try commit(temporary, digest: file.digest(), size: file.count, mediaType: "application/octet-stream")
    }

    /// Writes an image: one layer per entry of `layerSizes` (payload bytes), a config
    /// and a manifest of the given format.
    public func image(
        layerSizes: [Int],
        format: ManifestFormat,
        os: String = "linux",
        architecture: String = "amd64"
    ) throws -> GeneratedImage {
        var layers: [GeneratedBlob] = []
        var diffIDs: [String] = []
        for size in layerSizes {
            let (blob, diffID) = try layer(payloadSize: size, mediaType: format.layerMediaType)
            layers.append(blob)
            diffIDs.append(diffID)
        }
        let configJSON = ImageConfigJSON(
            architecture: architecture, os: os,
            rootfs: .init(type: "layers", diff_ids: diffIDs),
            config: .init(Env: ["PATH=/usr/bin"]),
            created: "2024-01-01T00:00:00Z")
        let config = try writeJSON(configJSON, mediaType: format.configMediaType)
        let manifestJSON = ImageManifestJSON(
            schemaVersion: 2, mediaType: format.manifestMediaType,
            config: DescriptorJSON(config), layers: layers.map { DescriptorJSON($0) })
        let manifest = try writeJSON(manifestJSON, mediaType: format.manifestMediaType)
        return GeneratedImage(
            manifest: manifest, config: config, layers: layers, diffIDs: diffIDs,
            platform: Platform(os: os, architecture: architecture), format: format)
    }

    /// Writes one image per platform (each with its own layers of `layerSizes`) and an
    /// index over them: a Docker manifest list for `.dockerSchema2`, an OCI index for `.oci`.
    public func index(
        platforms: [(os: String, architecture: String)],
        layerSizes: [Int],
        format: ManifestFormat
    ) throws -> GeneratedIndex {
        var images: [GeneratedImage] = []
        for platform in platforms {
            images.append(
                try image(layerSizes: layerSizes, format: format, os: platform.os, architecture: platform.architecture))
        }
        let indexJSON = IndexJSON(
            schemaVersion: 2, mediaType: format.indexMediaType,
            manifests: images.map {
                DescriptorJSON($0.manifest, platform: .init(architecture: $0.platform.architecture, os: $0.platform.os))
            })
        let index = try writeJSON(indexJSON, mediaType: format.indexMediaType)
        return GeneratedIndex(index: index, images: images, format: format)
    }

    // MARK: - Files

    private func temporaryPath() -> String {
        directory + "/.partial-" + UUID().uuidString
    }

    /// Renames a finished temporary file to its digest-derived name.
    private func commit(_ temporary: String, digest: String, size: Int, mediaType: String) throws -> GeneratedBlob {
        let hex = String(digest.dropFirst("sha256:".count))
        let final = directory + "/" + hex
        if rename(temporary, final) != 0 {
            let code = errno
            try? FileManager.default.removeItem(atPath: temporary)
            throw FixtureError.system("rename to \(final)", code)
        }
        return GeneratedBlob(digest: digest, size: size, path: final, mediaType: mediaType)
    }

    func writeJSON<T: Encodable>(_ value: T, mediaType: String) throws -> GeneratedBlob {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try self.document(encoder.encode(value), mediaType: mediaType)
    }

    /// Writes `data` as it is (a manifest, an index, a config: valid or not) under its digest.
    public func document(_ data: Data, mediaType: String) throws -> GeneratedBlob {
        let digest = "sha256:" + hexString(SHA256.hash(data: data))
        let temporary = temporaryPath()
        try data.write(to: URL(fileURLWithPath: temporary))
        return try commit(temporary, digest: digest, size: data.count, mediaType: mediaType)
    }
}

// MARK: - JSON shapes

private struct DescriptorJSON: Encodable {
    struct PlatformJSON: Encodable {
        let architecture: String
        let os: String
    }

    let mediaType: String
    let size: Int
    let digest: String
    let platform: PlatformJSON?

    init(_ blob: GeneratedBlob, platform: PlatformJSON? = nil) {
        mediaType = blob.mediaType
        size = blob.size
        digest = blob.digest
        self.platform = platform
    }
}

private struct ImageManifestJSON: Encodable {
    let schemaVersion: Int
    let mediaType: String
    let config: DescriptorJSON
    let layers: [DescriptorJSON]
}

private struct IndexJSON: Encodable {
    let schemaVersion: Int
    let mediaType: String
    let manifests: [DescriptorJSON]
}

private struct ImageConfigJSON: Encodable {
    struct RootFS: Encodable {
        let type: String
        let diff_ids: [String]
    }

    struct Config: Encodable {
        let Env: [String]
    }

    let architecture: String
    let os: String
    let rootfs: RootFS
    let config: Config
    let created: String
}

// MARK: - PRNG

/// SplitMix64 (Steele, Lea, Flood): one add and two multiply-xorshift steps per 8 bytes.
struct SplitMix64 {
    private var state: UInt64

    /// A generator for `stream` (a per-call sequence number) under `seed`.
    init(seed: UInt64, stream: UInt64) {
        state = seed
        // Scramble the stream number through one SplitMix step so nearby streams diverge.
        var mixer = SplitMix64(rawState: stream &* 0xD1B5_4A32_D192_ED03 ^ 0x5851_F42D_4C95_7F2D)
        state ^= mixer.next()
    }

    private init(rawState: UInt64) { state = rawState }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z &>> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z &>> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z &>> 31)
    }

    /// Fills `buffer` with pseudo-random bytes.
    mutating func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress else { return }
        let words = buffer.count / 8
        var local = state
        var pointer = UnsafeMutableRawPointer(base)
        var remainingWords = words
        while remainingWords > 0 {
            local &+= 0x9E37_79B9_7F4A_7C15
            var z = local
            z = (z ^ (z &>> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z &>> 27)) &* 0x94D0_49BB_1331_11EB
            pointer.storeBytes(of: (z ^ (z &>> 31)).littleEndian, as: UInt64.self)
            pointer += 8
            remainingWords &-= 1
        }
        state = local
        var tail = buffer.count - words * 8
        if tail > 0 {
            var last = next().littleEndian
            withUnsafeBytes(of: &last) { bytes in
                var index = 0
                while tail > 0 {
                    pointer.storeBytes(of: bytes[index], as: UInt8.self)
                    pointer += 1
                    index += 1
                    tail -= 1
                }
            }
        }
    }
}
