import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfMirror

/// `GET`/`HEAD /v2/<name>/manifests/<reference>`: renders the ``ReadService``'s answer.
struct ManifestEndpoint: Sendable {
    let reads: ReadService

    func serve(name rawName: String, reference rawReference: String, request: HTTPRequestHead, writer: ResponseWriter) async throws {
        let name = try RepositoryName(parsing: rawName)
        let reference = try Reference(parsing: rawReference)
        let routed = try await self.reads.route(name, namespace: writer.namespace, identity: writer.identity)
        writer.routed = routed
        let query = ManifestQuery(
            reference: reference, accept: AcceptSet(lines: request.headers["accept"]), isHead: writer.isHead, identity: writer.identity,
            client: writer.client)
        let answer = try await self.reads.manifest(query, routed)
        writer.cache = answer.cacheOutcome
        var h = writer.headers()
        h.add(name: "Content-Type", value: answer.mediaType)
        h.add(name: "X-Content-Type-Options", value: "nosniff")  // a manifest is data, never a page to render
        h.add(name: "Docker-Content-Digest", value: answer.digest.description)
        h.add(name: "ETag", value: "\"\(answer.digest)\"")
        if answer.stale { h.add(name: "Warning", value: "110 wharf \"Response is Stale\""); h.add(name: "X-Wharf-Stale", value: "true") }
        if Self.matches(ifNoneMatch: request.headers["if-none-match"], answer.digest) {
            try await writer.send(status: .notModified, headers: h, body: nil)
            return
        }
        var body = writer.allocator.buffer(capacity: answer.bytes.count)
        body.writeBytes(answer.bytes)
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
