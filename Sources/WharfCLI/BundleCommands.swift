#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import OCIDistribution
import WharfConfig
import WharfStorage
import WharfText

/// `wharf export IMAGE… -o bundle.tar`: the images, as a running Wharf serves them (from its cache,
/// or filled on the way), written as an OCI image-layout tarball for a site with no upstream link.
struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export", abstract: "Write images as an OCI image-layout tarball.")

    @Argument(help: "Images as the mirror's clients name them: REPO[:TAG] or REPO@sha256:….")
    var images: [String]

    @Option(name: .shortAndLong, help: "The tarball to write.")
    var output: String

    @Option(help: "Base URL of the running Wharf, http(s)://HOST:PORT (HOST:PORT means http://).")
    var url = CommandHTTPClient.defaultURL

    @Option(help: "containerd-style namespace to route by, if the mirror routes by ns.")
    var ns: String?

    func validate() throws {
        _ = try CommandHTTPClient.baseURL(self.url)
    }

    func run() async throws {
        let base = try CommandHTTPClient.baseURL(self.url)
        try await CommandHTTPClient.run { http in
            let client = WarmClient(base: base, ns: self.ns, authorization: nil, client: http)
            try await client.checkReachable()
            try await self.export(from: client)
        }
    }

    /// Resolves the images through `client` and writes the tarball; removes it on failure.
    private func export(from client: WarmClient) async throws {
        var manifests: [(digest: String, bytes: [UInt8])] = [], seen = Set<String>()
        var blobs: [(repository: String, digest: String, size: Int64)] = [], blobSeen = Set<String>()
        var index: [[String: Any]] = []
        for image in self.images {
            let (repository, reference) = try Warmer.parse(image)
            var queue = [reference], top = true
            while let ref = queue.popLast() {
                let m = try await client.manifest(repository: repository, reference: ref)
                if top {
                    var annotations = ["io.wharf.repository": repository]
                    if !ref.hasPrefix("sha256:") { annotations["org.opencontainers.image.ref.name"] = ref }
                    index.append(["mediaType": m.mediaType, "digest": m.digest, "size": m.bytes.count, "annotations": annotations])
                    top = false
                }
                if seen.insert(m.digest).inserted { manifests.append((m.digest, m.bytes)) }
                let parsed = try ManifestShape.parse(m.bytes)
                queue += parsed.children
                for (d, size) in parsed.blobs where blobSeen.insert(d).inserted { blobs.append((repository, d, size)) }
            }
        }
        guard let out = FileHandle(forWritingAtPath: self.output) ?? {
            FileManager.default.createFile(atPath: self.output, contents: nil) ? FileHandle(forWritingAtPath: self.output) : nil
        }() else { throw ValidationError("cannot write \(self.output)") }
        try out.truncate(atOffset: 0)
        do {
            func file(_ name: String, _ bytes: [UInt8]) throws {
                try out.write(contentsOf: Tar.header(name: name, size: Int64(bytes.count)) + bytes + Tar.padding(Int64(bytes.count)))
            }
            try out.write(contentsOf: Tar.header(name: "blobs/", size: 0, directory: true) + Tar.header(name: "blobs/sha256/", size: 0, directory: true))
            try file("oci-layout", Array(#"{"imageLayoutVersion":"1.0.0"}"#.utf8))
            let indexJSON = try JSONSerialization.data(withJSONObject: ["schemaVersion": 2, "mediaType": MediaType.ociIndex, "manifests": index], options: [.sortedKeys])
            try file("index.json", Array(indexJSON))
            for m in manifests { try file("blobs/sha256/" + m.digest.dropFirst(7), m.bytes) }
            var total: Int64 = 0
            for b in blobs {
                try out.write(contentsOf: Tar.header(name: "blobs/sha256/" + b.digest.dropFirst(7), size: b.size))
                let written = try await client.streamBlob(repository: b.repository, digest: b.digest) { try out.write(contentsOf: $0) }
                guard written == b.size else { throw BundleError("\(b.digest): got \(written) bytes, the manifest says \(b.size)") }
                try out.write(contentsOf: Tar.padding(b.size))
                total += written
            }
            try out.write(contentsOf: [UInt8](repeating: 0, count: 2 * Tar.block))
            try out.close()
            print("exported \(self.images.count) image(s): \(manifests.count) manifest(s), \(blobs.count) blob(s), \(ByteCount.string(total)) to \(self.output)")
        } catch {
            try? out.close()
            try? FileManager.default.removeItem(atPath: self.output)
            throw error
        }
    }
}

/// `wharf import bundle.tar --data-dir DIR --upstream NAME`: loads an OCI image-layout tarball into a
/// cache folder, checking every digest (it holds the folder's ``DataDirectoryLock``, so it is refused
/// while a server uses the folder); the images' tags and blobs then serve as if
/// pulled from upstream `NAME`.
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "import", abstract: "Load an OCI image-layout tarball into a cache folder.")

    @Argument(help: "The tarball (from wharf export, or any OCI image layout with io.wharf.repository or --repository).")
    var bundle: String

    @Option(name: .customLong("data-dir"), help: "Cache folder (refused while a Wharf is running on it).")
    var dataDirectory: String

    @Option(help: """
        Name of the upstream these images belong to on the Wharf serving this folder (wharf stats lists them): \
        one of --config's upstreams, else of those its last wharf serve recorded.
        """)
    var upstream: String

    @Option(help: "The configuration file the folder is served with (also WHARF_CONFIG); --upstream must name one of its upstreams.")
    var config: String?

    @Option(help: "Repository for images whose index entry names none.")
    var repository: String?

    func run() throws {
        let fd = open(self.bundle, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ValidationError("cannot open \(self.bundle)") }
        defer { close(fd) }
        let layout = CacheLayout(root: self.dataDirectory)
        let configured = try self.configuredUpstreams(environment: ProcessInfo.processInfo.environment)
        let served = FileManager.default.fileExists(atPath: layout.indexDirectory + "/data.mdb")
        if configured == nil, !served { try self.checkUpstream(among: UpstreamNames.unserved) }  // before anything is created
        try layout.createDirectories()
        let lock = try DataDirectoryLock(directory: layout.root)
        defer { lock.release() }
        let entries = Dictionary(try Tar.entries(fd: fd).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        func read(_ name: String, limit: Int64 = 8 << 20) throws -> [UInt8] {
            guard let e = entries[name] else { throw BundleError("the bundle has no \(name)") }
            guard e.size <= limit else { throw BundleError("\(name) is too large") }
            var bytes = [UInt8](repeating: 0, count: Int(e.size))
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Int(e.size), off_t(e.offset)) }
            guard n == Int(e.size) else { throw BundleError("cannot read \(name)") }
            return bytes
        }
        struct Index: Decodable {
            struct Entry: Decodable { let mediaType: String?; let digest: String; let annotations: [String: String]? }
            let manifests: [Entry]
        }
        let cache = try CacheIndex(directory: layout.indexDirectory)
        if let configured {
            try self.checkUpstream(among: configured)
        } else if served {
            try self.checkUpstream(among: try cache.recordedUpstreamNames().map { .recorded(self.dataDirectory, $0) } ?? UpstreamNames.unserved)
        }
        let index = try JSONDecoder().decode(Index.self, from: Data(try read("index.json")))
        let store = BlobStore(layout: layout)
        var manifestCount = 0, blobCount = 0, bytes: Int64 = 0
        for entry in index.manifests {
            guard let repository = entry.annotations?["io.wharf.repository"] ?? self.repository else {
                throw BundleError("\(entry.digest) names no repository: pass --repository")
            }
            _ = try RepositoryName(parsing: repository)
            let tag = entry.annotations?["org.opencontainers.image.ref.name"]
            var queue: [(digest: String, mediaType: String?, tag: String?)] = [(entry.digest, entry.mediaType, tag)]
            while let (d, mediaType, tag) = queue.popLast() {
                let digest = try Digest(parsing: d)
                let bytesOfManifest = try read("blobs/sha256/\(digest.hex)")
                guard Digest.sha256(of: bytesOfManifest) == digest else { throw BundleError("manifest \(d) does not match its digest") }
                let shape = try ManifestShape.parse(bytesOfManifest)
                let type = mediaType ?? shape.mediaType ?? MediaType.ociManifest
                guard MediaType.isManifestType(type) else { throw BundleError("manifest \(d) does not have a manifest's media type") }
                let manifest = StoredManifest(digest: digest, mediaType: type, bytes: bytesOfManifest)
                try cache.putManifest(manifest, upstream: self.upstream, repository: repository, tag: tag.map { ($0, AcceptSet.all.classKey) })
                manifestCount += 1
                queue += shape.childDescriptors.map { ($0.digest, $0.mediaType, nil) }
                for (b, size) in shape.blobs {
                    let blob = try Digest(parsing: b)
                    if let record = try cache.blob(blob), FileSystemCalls.fileSize(layout.blobPath(blob)) == record.size {
                        try cache.link([blob], upstream: self.upstream, repository: repository)
                        continue
                    }
                    guard let e = entries["blobs/sha256/\(blob.hex)"], e.size == size else { throw BundleError("blob \(b) is missing or has the wrong size") }
                    try Self.copy(fd: fd, entry: e, digest: blob, store: store, index: cache, link: (self.upstream, repository))
                    blobCount += 1
                    bytes += e.size
                }
            }
        }
        print("imported \(index.manifests.count) image(s): \(manifestCount) manifest(s), \(blobCount) new blob(s), \(ByteCount.string(bytes)); every digest verified")
    }

    /// The upstream names of `--config` (or `WHARF_CONFIG`), or nil when neither is given.
    private func configuredUpstreams(environment env: [String: String]) throws -> UpstreamNames? {
        guard let path = self.config ?? env["WHARF_CONFIG"].flatMap({ $0.isEmpty ? nil : $0 }) else { return nil }
        do {
            return .configured(path, try ConfigurationLoader.load(path: path).upstreams.map(\.name))
        } catch {
            throw CommandError(ConfigCheckCommand.located(error, in: path))
        }
    }

    /// Refuses an `--upstream` the folder's server does not have: the images would be filed under a
    /// name it never reads, and stay invisible.
    private func checkUpstream(among known: UpstreamNames) throws {
        guard !known.names.contains(self.upstream) else { return }
        let hint = CommandLineValues.suggestion(for: self.upstream, among: known.names).map { " Did you mean '\($0)'?" } ?? ""
        throw CommandError("--upstream '\(self.upstream)' is not an upstream of \(known.source).\(hint)\n\(known.advice)")
    }

    /// Copies one member through a ``BlobIngest`` (hashed as it is written), which publishes and
    /// indexes it, linked to `link`, only if its size and digest match.
    static func copy(fd: Int32, entry: Tar.Entry, digest: Digest, store: BlobStore, index: CacheIndex, link: (upstream: String, repository: String)) throws {
        var ingest = try BlobIngest.begin(digest, store: store, index: index, expectedSize: entry.size)
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        do {
            while ingest.written < entry.size {
                let want = Int(min(Int64(buffer.count), entry.size - ingest.written))
                let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(entry.offset + ingest.written)) }
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { throw BundleError("cannot read \(digest)") }
                try buffer.withUnsafeBytes { raw in try ingest.append(UnsafeRawBufferPointer(rebasing: raw[0..<n])) }
            }
        } catch {
            ingest.abort()
            throw error
        }
        do {
            _ = try ingest.commit(link: link)
        } catch BlobIngest.Failure.digestMismatch {
            throw BundleError("blob \(digest) does not match its digest")
        }
    }
}

/// The upstream names `wharf import` accepts for a data folder, and where they come from.
enum UpstreamNames {
    /// The upstreams of the configuration file the folder is served with.
    case configured(String, [String])
    /// The upstreams the folder's last `wharf serve` recorded in its index.
    case recorded(String, [String])
    /// A folder no `wharf serve` has recorded upstreams in, and no configuration file: the names a
    /// serve without a file gives its one upstream.
    case unserved

    var names: [String] {
        switch self {
        case .configured(_, let names), .recorded(_, let names): names
        case .unserved: ["default", "dockerhub"]
        }
    }

    var source: String {
        switch self {
        case .configured(let file, let names): "the configuration \(file) (it has \(names.joined(separator: ", ")))"
        case .recorded(let folder, let names): "the Wharf serving \(folder) (its last start had \(names.joined(separator: ", ")))"
        case .unserved: "a Wharf started without a configuration file ('default' with --upstream URL, 'dockerhub' for Docker Hub)"
        }
    }

    var advice: String {
        switch self {
        case .configured: "Use one of its names, or add the upstream to the file."
        case .recorded: "Use one of those names, or pass --config FILE with the configuration the folder will be served with."
        case .unserved: "No wharf serve has recorded its upstreams in this folder yet: pass --config FILE with the configuration it will be served with, or start wharf serve on it once."
        }
    }
}

/// What a manifest or index refers to.
struct ManifestShape {
    struct Child { let digest: String; let mediaType: String? }
    var mediaType: String?
    var childDescriptors: [Child] = []
    var blobs: [(String, Int64)] = []
    var children: [String] { self.childDescriptors.map(\.digest) }

    static func parse(_ bytes: [UInt8]) throws -> ManifestShape {
        struct D: Decodable { let digest: String; let size: Int64?; let mediaType: String? }
        struct M: Decodable { let mediaType: String?; let config: D?; let layers: [D]?; let manifests: [D]? }
        let m = try JSONDecoder().decode(M.self, from: Data(bytes))
        var shape = ManifestShape(mediaType: m.mediaType)
        shape.childDescriptors = (m.manifests ?? []).map { Child(digest: $0.digest, mediaType: $0.mediaType) }
        if let c = m.config { shape.blobs.append((c.digest, c.size ?? 0)) }
        for l in m.layers ?? [] { shape.blobs.append((l.digest, l.size ?? 0)) }
        return shape
    }
}
