import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution

/// HTTP to a running Wharf: manifests and blobs, as a ``WarmSource`` for `wharf warm` and for `wharf export`.
struct WarmClient: WarmSource {
    let base: String
    let ns: String?
    let authorization: String?
    /// A client from ``CommandHTTPClient/run(_:)``, shut down by it.
    let client: HTTPClient

    static let accept = [
        "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
    ].joined(separator: ", ")

    func url(_ path: String) -> String {
        self.base + path + (self.ns.map { "?ns=" + ($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: ".-_:"))) ?? $0) } ?? "")
    }

    func request(_ path: String, accept: String? = nil) -> HTTPClientRequest {
        var r = HTTPClientRequest(url: self.url(path))
        if let accept { r.headers.add(name: "Accept", value: accept) }
        if let a = self.authorization { r.headers.add(name: "Authorization", value: a) }
        return r
    }

    /// Fails fast, naming the URL, when no Wharf answers at ``base`` (any HTTP answer will do).
    func checkReachable() async throws {
        do {
            let response = try await self.client.execute(self.request("/v2/"), timeout: .seconds(5))
            _ = try await response.body.collect(upTo: 1 << 20)
        } catch {
            throw CommandHTTPClient.unreachable(self.base, error)
        }
    }

    /// One manifest's exact bytes, type and digest (checked against the bytes).
    func manifest(repository: String, reference: String) async throws -> (digest: String, mediaType: String, bytes: [UInt8]) {
        let response = try await self.client.execute(self.request("/v2/\(repository)/manifests/\(reference)", accept: Self.accept), timeout: .seconds(120))
        let body = try await response.body.collect(upTo: 8 << 20)
        guard response.status == .ok else { throw ValidationError("manifest \(repository):\(reference): HTTP \(response.status.code)") }
        let bytes = Array(body.readableBytesView)
        let digest = Digest.sha256(of: bytes).description
        if reference.hasPrefix("sha256:"), reference != digest { throw ValidationError("manifest \(reference) does not match its digest") }
        return (digest, response.headers.first(name: "content-type") ?? MediaType.ociManifest, bytes)
    }

    /// Streams one blob through `sink`, checking its digest; returns its size.
    func streamBlob(repository: String, digest: String, sink: ([UInt8]) throws -> Void) async throws -> Int64 {
        let response = try await self.client.execute(self.request("/v2/\(repository)/blobs/\(digest)"), timeout: .hours(6))
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

    func manifestBytes(repository: String, reference: String) async throws -> [UInt8] {
        try await self.manifest(repository: repository, reference: reference).bytes
    }

    /// Reads one blob through the mirror (which caches it) and returns its byte count, which must be
    /// the manifest's `size` when that is known.
    func warmBlob(repository: String, digest: String, size: Int64, limiter: RateLimiter) async throws -> Int64 {
        let response = try await self.client.execute(self.request("/v2/\(repository)/blobs/\(digest)"), timeout: .hours(6))
        guard response.status == .ok else {
            _ = try? await response.body.collect(upTo: 1 << 20)
            throw ValidationError("HTTP \(response.status.code)")
        }
        var n: Int64 = 0
        for try await chunk in response.body {
            n += Int64(chunk.readableBytes)
            await limiter.consume(chunk.readableBytes)
        }
        guard size <= 0 || n == size else { throw ValidationError("got \(n) bytes, the manifest says \(size)") }
        return n
    }
}
