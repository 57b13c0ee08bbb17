import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfAuth
import WharfMirror

/// The admin API, behind ``AdminAuthenticator`` (JSON in and out; parameters in the query):
///
/// - `GET /admin/cache?q=&after=`: cached repositories and tags (as the cache browser lists them).
/// - `POST /admin/purge?upstream=&repository=[&reference=]`: removes an image (tag or digest) or the
///   whole repository; blobs another cached image or a pin uses, or being sent or filled, stay.
/// - `GET /admin/pins`, `POST`/`DELETE /admin/pins?upstream=&image=`: pins made at run time.
/// - `POST /admin/warm`: runs the configured `warm` list now.
///
/// `upstream` defaults to the default upstream.
struct AdminEndpoint: Sendable {
    let mirror: Mirror
    let auth: AdminAuthenticator

    func serve(_ action: String, method: HTTPMethod, target: ParsedTarget, head: HTTPRequestHead, writer: ResponseWriter) async throws {
        _ = try await self.auth.authorize(authorization: head.headers.first(name: "authorization"), isSecure: writer.isSecure, client: writer.client)
        let upstream = target.queryValue("upstream") ?? self.mirror.upstreamNames.first ?? ""
        switch (method, action) {
        case (.GET, "cache"):
            let page = self.mirror.catalog.page(query: String((target.queryValue("q") ?? "").prefix(200)), after: target.queryValue("after"), limit: 100)
            let repositories: [[String: Any]] = page.repositories.map { r in
                ["upstream": r.upstream, "repository": r.name, "tags": r.tags.map { t -> [String: Any] in
                    var out: [String: Any] = ["tag": t.tag, "digest": t.digest.description, "platforms": t.image.platforms, "size": t.image.size,
                                              "cachedBytes": t.image.cachedBytes, "pinned": t.image.pinned]
                    if let last = t.image.lastPulled { out["lastPulled"] = last }
                    return out
                }]
            }
            var body: [String: Any] = ["repositories": repositories]
            if let next = page.next { body["next"] = next }
            try await self.json(writer, .ok, body)
        case (.POST, "purge"):
            guard self.mirror.upstreamNames.contains(upstream) else { throw RegistryError(.nameUnknown, "no upstream named '\(upstream)'") }
            guard let repository = target.queryValue("repository"), (try? RepositoryName(parsing: repository)) != nil else {
                throw RegistryError(.nameInvalid, "repository= must name a repository")
            }
            let reference = target.queryValue("reference").flatMap { $0.isEmpty ? nil : $0 }
            if let reference, (try? Reference(parsing: reference)) == nil { throw RegistryError(.manifestInvalid, "reference= must be a tag or a digest", status: 400) }
            switch try await self.mirror.purge(upstream: upstream, repository: repository, reference: reference) {
            case .purged(let tags, let manifests, let blobs, let bytes, let shared, let inUse):
                try await self.json(writer, .ok, [
                    "tags": tags, "manifests": manifests, "blobs": blobs, "bytes": bytes, "keptShared": shared, "keptInUse": inUse,
                ])
            case .notCached:
                throw RegistryError(.manifestUnknown, "\(repository)\(reference.map { ":" + $0 } ?? "") is not cached")
            case .pinned:
                throw RegistryError(.denied, "pinned: unpin it first", status: 409)
            }
        case (.GET, "pins"):
            let runtime = self.mirror.pins.pinnedAtRunTime.map { ["upstream": $0.upstream, "image": $0.image] }
            try await self.json(writer, .ok, ["pins": runtime])
        case (.POST, "pins"), (.DELETE, "pins"):
            guard let image = target.queryValue("image"), !image.isEmpty else { throw RegistryError(.nameInvalid, "image= must name an image") }
            let changed: Bool
            do {
                changed = method == .POST ? try self.mirror.pins.pin(upstream: upstream, image: image) : try self.mirror.pins.unpin(upstream: upstream, image: image)
            } catch let e as PinError {
                throw RegistryError(.nameInvalid, e.description)
            }
            if method == .DELETE, !changed { throw RegistryError(.notFound, "no run-time pin \(image) at \(upstream)") }
            try await self.json(writer, method == .POST && changed ? .created : .ok, ["upstream": upstream, "image": image, "changed": changed])
        case (.POST, "warm"):
            guard self.mirror.warmTrigger.hasListener else { throw RegistryError(.unsupported, "no warm list is configured (the 'warm' section)", status: 409) }
            self.mirror.warmTrigger.fire()
            try await self.json(writer, .accepted, ["warm": "started"])
        case (_, "cache"), (_, "purge"), (_, "pins"), (_, "warm"):
            throw RegistryError(.unsupported, "\(method.rawValue) is not allowed on /admin/\(action)", status: 405)
        default:
            throw RegistryError(.notFound, "no such admin action")
        }
    }

    private func json(_ writer: ResponseWriter, _ status: HTTPResponseStatus, _ body: [String: Any]) async throws {
        let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
        var h = writer.headers()
        h.add(name: "Content-Type", value: "application/json")
        h.add(name: "Cache-Control", value: "no-store")
        var buffer = writer.allocator.buffer(capacity: data.count + 1)
        buffer.writeBytes(data)
        buffer.writeString("\n")
        try await writer.send(status: status, headers: h, body: buffer)
    }
}
