import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution
import Synchronization
import WharfConfig

/// `wharf warm IMAGE…`: pulls images through a running Wharf so their manifests and layers are
/// cached before anyone asks (the cache's version of pull mirroring). Bodies are read and dropped.
struct WarmCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warm", abstract: "Fetch images into a running Wharf's cache ahead of demand.")

    @Argument(help: "Images as the mirror's clients name them: REPO[:TAG] or REPO@sha256:… (e.g. library/alpine:3.20, ghcr/org/tool:1).")
    var images: [String]

    @Option(help: "Base URL of the running Wharf.")
    var url = "http://127.0.0.1:5000"

    @Option(name: .customLong("platform"), help: "Only this platform of multi-arch images, OS/ARCH[/VARIANT] (repeatable; default all).")
    var platforms: [String] = []

    @Option(name: .customLong("max-rate"), help: "Bandwidth cap for layer downloads per second, e.g. 50MB or 100MiB.")
    var maxRate: String?

    @Option(help: "containerd-style namespace to route by (e.g. docker.io), if the mirror routes by ns.")
    var ns: String?

    @Option(help: "File holding 'user:password' for a Wharf that requires client authentication.")
    var credentials: String?

    @Option(help: "Blobs fetched at the same time.")
    var parallel = 4

    func run() async throws {
        var base = self.url
        while base.hasSuffix("/") { base.removeLast() }
        let rate = try self.maxRate.map { text -> Int64 in
            guard let v = ByteSize.parse(text), v > 0 else { throw ValidationError("--max-rate must be a size per second, e.g. 50MB") }
            return v
        }
        var authorization: String?
        if let file = self.credentials {
            let line = try String(contentsOfFile: file, encoding: .utf8).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
            authorization = "Basic " + Data(line.utf8).base64EncodedString()
        }
        let client = WarmClient(base: base, ns: self.ns, authorization: authorization)
        let started = ContinuousClock.now
        var blobs: [String: (repository: String, size: Int64)] = [:]
        var manifests = 0, failures: [String] = []
        for image in self.images {
            do {
                let (repository, reference) = try Self.parse(image)
                let found = try await client.resolve(repository: repository, reference: reference, platforms: self.platforms)
                manifests += found.manifests
                for (digest, size) in found.blobs where blobs[digest] == nil { blobs[digest] = (repository, size) }
                print("\(image): \(found.manifests) manifest(s), \(found.blobs.count) blob(s)")
            } catch {
                failures.append("\(image): \(error)")
                print("\(image): FAILED: \(error)")
            }
        }
        let total = blobs.values.reduce(Int64(0)) { $0 + $1.size }
        let progress = ProgressReporter(total: blobs.count, totalBytes: total, verb: "warmed")
        let limiter = RateLimiter(bytesPerSecond: rate)
        let results = await withTaskGroup(of: (String, Result<Int64, any Error>).self) { group in
            var pending = blobs.sorted { $0.key < $1.key }.makeIterator()
            var out: [(String, Result<Int64, any Error>)] = []
            func add() {
                guard let (digest, info) = pending.next() else { return }
                group.addTask {
                    do {
                        let n = try await client.fetchBlob(repository: info.repository, digest: digest, limiter: limiter)
                        return (digest, .success(n))
                    } catch { return (digest, .failure(error)) }
                }
            }
            for _ in 0..<max(1, self.parallel) { add() }
            while let r = await group.next() {
                out.append(r)
                if case .success(let n) = r.1 { progress.advance(bytes: Int(n)) }
                progress.itemDone()
                add()
            }
            return out
        }
        progress.finish()
        var fetched: Int64 = 0
        for (digest, result) in results {
            switch result {
            case .success(let n): fetched += n
            case .failure(let e): failures.append("\(digest): \(e)")
            }
        }
        let seconds = Double((ContinuousClock.now - started).components.attoseconds) / 1e18 + Double((ContinuousClock.now - started).components.seconds)
        print("warmed \(self.images.count - failures.filter { !$0.hasPrefix("sha256:") }.count)/\(self.images.count) image(s): "
            + "\(manifests) manifest(s), \(results.count - failures.filter { $0.hasPrefix("sha256:") }.count)/\(blobs.count) blob(s), "
            + "\(ByteFormat.string(fetched)) in \(String(format: "%.1f", seconds)) s")
        guard failures.isEmpty else {
            failures.forEach { print("failed: \($0)") }
            throw ExitCode(1)
        }
    }

    static func parse(_ image: String) throws -> (String, String) {
        var rest = Substring(image)
        var reference = "latest"
        if let at = rest.firstIndex(of: "@") {
            reference = String(rest[rest.index(after: at)...])
            _ = try Digest(parsing: reference)
            rest = rest[..<at]
        } else if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            reference = String(rest[rest.index(after: colon)...])
            _ = try Tag(parsing: reference)
            rest = rest[..<colon]
        }
        return (try RepositoryName(parsing: rest).value, reference)
    }
}

/// Spreads downloads so their sum stays under a byte rate (nil: no cap).
final class RateLimiter: Sendable {
    private let bytesPerSecond: Int64?
    private let state = Mutex((start: ContinuousClock.now, bytes: Int64(0)))

    init(bytesPerSecond: Int64?) { self.bytesPerSecond = bytesPerSecond }

    /// Accounts `bytes` and waits until the running total is back within the rate.
    func consume(_ bytes: Int) async {
        guard let rate = self.bytesPerSecond else { return }
        let due: Duration = self.state.withLock { s in
            s.bytes += Int64(bytes)
            let allowedAt = s.start + .milliseconds(s.bytes * 1000 / rate)
            return allowedAt - ContinuousClock.now
        }
        if due > .zero { try? await Task.sleep(for: due) }
    }
}

/// HTTP to the running Wharf: manifests (following indexes to the chosen platforms) and blobs.
struct WarmClient: Sendable {
    let base: String
    let ns: String?
    let authorization: String?

    static let accept = [
        "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
    ].joined(separator: ", ")

    private struct Descriptor: Decodable {
        let digest: String
        let size: Int64?
        let platform: Platform?
        struct Platform: Decodable { let os: String?; let architecture: String?; let variant: String? }
    }
    private struct Manifest: Decodable {
        let mediaType: String?
        let config: Descriptor?
        let layers: [Descriptor]?
        let manifests: [Descriptor]?
    }

    func url(_ path: String) -> String {
        self.base + path + (self.ns.map { "?ns=" + ($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: ".-_:"))) ?? $0) } ?? "")
    }

    func request(_ path: String, accept: String? = nil) -> HTTPClientRequest {
        var r = HTTPClientRequest(url: self.url(path))
        if let accept { r.headers.add(name: "Accept", value: accept) }
        if let a = self.authorization { r.headers.add(name: "Authorization", value: a) }
        return r
    }

    /// Every manifest fetched and every blob (digest → size) the chosen platforms need.
    func resolve(repository: String, reference: String, platforms: [String]) async throws -> (manifests: Int, blobs: [(String, Int64)]) {
        var queue = [reference], count = 0
        var blobs: [(String, Int64)] = []
        while let ref = queue.popLast() {
            let response = try await HTTPClient.shared.execute(self.request("/v2/\(repository)/manifests/\(ref)", accept: Self.accept), timeout: .seconds(120))
            let body = try await response.body.collect(upTo: 8 << 20)
            guard response.status == .ok else { throw ValidationError("manifest \(ref): HTTP \(response.status.code)") }
            count += 1
            let manifest = try JSONDecoder().decode(Manifest.self, from: Data(body.readableBytesView))
            if let children = manifest.manifests {
                for child in children where Self.wanted(child.platform, platforms) { queue.append(child.digest) }
            }
            if let config = manifest.config { blobs.append((config.digest, config.size ?? 0)) }
            for layer in manifest.layers ?? [] { blobs.append((layer.digest, layer.size ?? 0)) }
        }
        return (count, blobs)
    }

    private static func wanted(_ p: Descriptor.Platform?, _ platforms: [String]) -> Bool {
        guard !platforms.isEmpty else { return true }
        guard let p else { return false }
        let name = [p.os, p.architecture, p.variant].compactMap { $0 }.joined(separator: "/")
        return platforms.contains { name == $0 || name.hasPrefix($0 + "/") }
    }

    /// One manifest's exact bytes, type and digest (checked against the bytes).
    func manifest(repository: String, reference: String) async throws -> (digest: String, mediaType: String, bytes: [UInt8]) {
        let response = try await HTTPClient.shared.execute(self.request("/v2/\(repository)/manifests/\(reference)", accept: Self.accept), timeout: .seconds(120))
        let body = try await response.body.collect(upTo: 8 << 20)
        guard response.status == .ok else { throw ValidationError("manifest \(repository):\(reference): HTTP \(response.status.code)") }
        let bytes = Array(body.readableBytesView)
        let digest = Digest.sha256(of: bytes).description
        if reference.hasPrefix("sha256:"), reference != digest { throw ValidationError("manifest \(reference) does not match its digest") }
        return (digest, response.headers.first(name: "content-type") ?? MediaType.ociManifest, bytes)
    }

    /// Streams one blob through `sink`, checking its digest; returns its size.
    func streamBlob(repository: String, digest: String, sink: ([UInt8]) throws -> Void) async throws -> Int64 {
        let response = try await HTTPClient.shared.execute(self.request("/v2/\(repository)/blobs/\(digest)"), timeout: .hours(6))
        guard response.status == .ok else { throw ValidationError("blob \(digest): HTTP \(response.status.code)") }
        var hasher = StreamingSHA256()
        var n: Int64 = 0
        for try await chunk in response.body {
            let bytes = Array(chunk.readableBytesView)
            hasher.update(bytes)
            try sink(bytes)
            n += Int64(bytes.count)
        }
        guard "sha256:" + hasher.finalize() == digest else { throw ValidationError("blob \(digest) does not match its digest") }
        return n
    }

    /// Reads one blob through the mirror (which caches it) and returns its byte count.
    func fetchBlob(repository: String, digest: String, limiter: RateLimiter) async throws -> Int64 {
        let response = try await HTTPClient.shared.execute(self.request("/v2/\(repository)/blobs/\(digest)"), timeout: .hours(6))
        guard response.status == .ok else {
            _ = try? await response.body.collect(upTo: 1 << 20)
            throw ValidationError("HTTP \(response.status.code)")
        }
        var n: Int64 = 0
        for try await chunk in response.body {
            n += Int64(chunk.readableBytes)
            await limiter.consume(chunk.readableBytes)
        }
        return n
    }
}
