import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfMirror
import WharfStorage
import WharfUpstream

/// `GET`/`HEAD /v2/<name>/manifests/<reference>`.
struct ManifestEndpoint: Sendable {
    let mirror: Mirror
    let access: RequestAccess

    func serve(name rawName: String, reference rawReference: String, request: HTTPRequestHead, writer: ResponseWriter) async throws {
        let name = try RepositoryName(parsing: rawName)
        let reference = try Reference(parsing: rawReference)
        let accept = AcceptSet(lines: request.headers["accept"])
        let routed = try await self.access.route(name, writer)
        let repository = routed.repository
        if !self.mirror.manifests.isCachedAnswer(upstream: routed.client, repository: repository, reference: reference, accept: accept) {
            try self.mirror.lookups.charge(writer.client)
        }
        let answer = try await self.mirror.manifests.resolve(
            upstream: routed.client, repository: repository, reference: reference, accept: accept, identity: writer.identity)
        let manifest = answer.manifest
        writer.outcome = answer.stale ? "stale" : (answer.fromCache ? "hit" : "miss")
        let stats = self.mirror.stats
        (answer.fromCache ? stats.manifestHits : stats.manifestMisses).add()
        if !writer.isHead {
            stats.repository(repository, pull: true)
            if case .tag(let t) = reference {
                self.mirror.notifier.emit(.tagPulled(upstream: routed.client.configuration.name, repository: repository, tag: t.value, digest: manifest.digest.description))
            }
        }
        var h = writer.headers()
        h.add(name: "Content-Type", value: manifest.mediaType)
        h.add(name: "Docker-Content-Digest", value: manifest.digest.description)
        h.add(name: "ETag", value: "\"\(manifest.digest)\"")
        if answer.stale { h.add(name: "Warning", value: "110 wharf \"Response is Stale\""); h.add(name: "X-Wharf-Stale", value: "true") }
        if Self.matches(ifNoneMatch: request.headers["if-none-match"], manifest.digest) {
            try await writer.send(status: .notModified, headers: h, body: nil)
            return
        }
        var body = writer.allocator.buffer(capacity: manifest.bytes.count)
        body.writeBytes(manifest.bytes)
        try await writer.send(status: .ok, headers: h, body: body)
    }

    static func matches(ifNoneMatch values: [String], _ digest: Digest) -> Bool {
        guard !values.isEmpty else { return false }
        let d = digest.description
        return values.flatMap { $0.split(separator: ",") }.contains { v in
            let t = v.trimmingCharacters(in: .whitespaces)
            return t == d || t == "\"\(d)\"" || t == "W/\"\(d)\""
        }
    }
}
