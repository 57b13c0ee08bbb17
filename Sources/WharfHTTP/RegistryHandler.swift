import Logging
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfAuth
import WharfMirror

/// The async side: routes one request to the renderer for its endpoint and records its
/// ``RequestOutcome``. What to answer is decided by the ``ReadService``; the endpoints render it.
struct RegistryHandler: Sendable {
    let mirror: Mirror
    let reads: ReadService
    let auth: ClientAuthenticator
    let edge: EdgeSettings?
    let manifests: ManifestEndpoint
    let blobs: BlobEndpoint
    let metadata: MetadataEndpoint
    let status: StatusEndpoint
    let admin: AdminEndpoint?

    init(
        mirror: Mirror, auth: ClientAuthenticator, edge: EdgeSettings? = nil, about: ServerAbout = ServerAbout(), admin: AdminAuthenticator? = nil,
        logger: Logger
    ) {
        self.admin = admin.map { AdminEndpoint(mirror: mirror, auth: $0) }
        self.mirror = mirror
        self.auth = auth
        self.edge = edge
        let reads = ReadService(mirror: mirror, logger: logger) { identity, upstream, repository async throws(RegistryError) in
            try await auth.authorizePull(identity: identity, upstream: upstream, repository: repository)
        }
        self.reads = reads
        self.manifests = ManifestEndpoint(reads: reads)
        self.blobs = BlobEndpoint(reads: reads, edge: edge)
        self.metadata = MetadataEndpoint(reads: reads)
        self.status = StatusEndpoint(mirror: mirror, about: about)
    }

    func handle(_ head: HTTPRequestHead, _ writer: ResponseWriter) async throws {
        let started = ContinuousClock.now
        var kind = MirrorStats.RequestKind.other
        var aborted = false
        defer {
            let recorder = self.reads.outcomes
            let outcome = RequestOutcome(
                kind: kind, method: head.method.rawValue, path: head.uri, client: writer.client,
                userAgent: recorder.logsRequests ? head.headers.first(name: "user-agent") : nil, upstream: writer.routed?.upstreamName,
                repository: writer.routed?.repository, cache: writer.cache, errorCode: writer.errorCode, status: writer.status,
                bytes: writer.bytes, aborted: aborted,
                isPull: kind == .manifest && !writer.isHead && (writer.status == 200 || writer.status == 304) && Self.isTagRequest(head.uri),
                duration: ContinuousClock.now - started)
            if !aborted, outcome.bytes > 0, let channel = writer.channel {
                // A body is queued, not yet written: recorded once it is (aborted if the connection
                // failed first, e.g. the client went away), with the duration of the whole transfer.
                RegistryServer.queuedBytesWritten(channel).whenComplete { result in
                    var written = outcome
                    if case .failure = result { written.aborted = true }
                    written.duration = ContinuousClock.now - started
                    recorder.record(written)
                }
            } else {
                recorder.record(outcome)
            }
        }
        do {
            try await self.dispatch(head, writer, kind: &kind)
        } catch let error as RegistryError {
            guard writer.status == 0 else {
                aborted = true
                throw AbortResponse(reason: "\(error)")
            }
            try await writer.sendError(error)
        } catch {
            aborted = writer.status != 0
            throw error
        }
    }

    private func dispatch(_ head: HTTPRequestHead, _ writer: ResponseWriter, kind: inout MirrorStats.RequestKind) async throws {
        let target = try RequestRouter.parse(uri: head.uri)
        let readOnly = head.method == .GET || head.method == .HEAD
        kind = Self.kind(of: target.route)
        writer.namespace = try RequestRouter.namespace(of: target)
        switch target.route {
        case .base, .manifest, .blob, .tags, .referrers:
            // Registry API: the client authenticates first (status pages stay open for probes and scrapers).
            do {
                writer.identity = try await self.auth.authenticate(
                    authorization: head.headers.first(name: "authorization"), isSecure: writer.isSecure, client: writer.client,
                    requireCredentials: target.route == .base)
            } catch {
                self.reads.noteAuthRefusal()
                throw error
            }
        default:
            break
        }
        switch target.route {
        case .base where readOnly:
            var h = writer.headers()
            h.add(name: "Content-Type", value: "application/json")
            try await writer.send(status: .ok, headers: h, body: writer.allocator.buffer(string: "{}"))
        case .manifest(let name, let reference) where readOnly:
            try await self.manifests.serve(name: name, reference: reference, request: head, writer: writer)
        case .blob(let name, let digest) where readOnly:
            if let edge = self.edge, edge.requireSignedBlobs {
                try EdgeRedirect.checkSignature(edge, method: head.method.rawValue, name: name, digest: digest, target: target, namespace: writer.namespace)
            }
            try await self.blobs.serve(name: name, digest: digest, request: head, writer: writer)
        case .tags(let name) where readOnly:
            try await self.metadata.tags(name: name, target: target, writer: writer)
        case .referrers(let name, let digest) where readOnly:
            try await self.metadata.referrers(name: name, digest: digest, target: target, writer: writer)
        case .status(let page) where readOnly:
            let showNames = page.namesRepositories ? try await self.mayListRepositories(head, target, writer) : false
            try await self.status.serve(page, query: target, writer: writer, showNames: showNames)
        case .admin(let action):
            guard let admin = self.admin else { throw RegistryError(.notFound, "the admin API is not configured (the 'admin' section)") }
            try await admin.serve(action, method: head.method, target: target, head: head, writer: writer)
        case .notFound, .catalog:
            throw RegistryError(.notFound, "no such endpoint")
        default:
            throw RegistryError(.unsupported, "this is a read-only pull-through cache: \(head.method.rawValue) is not supported")
        }
    }

    /// Whether `/stats` and `/` may name repositories for this caller; `?signin` asks a browser for
    /// an administrator's credentials instead of showing the page without names.
    private func mayListRepositories(_ head: HTTPRequestHead, _ target: ParsedTarget, _ writer: ResponseWriter) async throws -> Bool {
        do {
            let names = try await self.auth.seesRepositoryNames(
                authorization: head.headers.first(name: "authorization"), isSecure: writer.isSecure, client: writer.client)
            if !names, target.query.contains(where: { $0.0 == "signin" }) {
                throw self.auth.challenge("sign in as an administrator (client-auth.admins) to see repository names")
            }
            return names
        } catch {
            self.reads.noteAuthRefusal()
            throw error
        }
    }

    /// A manifest request by tag (a pull starts there; the manifests an index lists come by digest).
    static func isTagRequest(_ uri: String) -> Bool {
        let path = uri.split(separator: "?", maxSplits: 1).first ?? ""
        return !(path.split(separator: "/").last ?? "").contains(":")
    }

    private static func kind(of route: Route) -> MirrorStats.RequestKind {
        switch route {
        case .base: .base
        case .manifest: .manifest
        case .blob: .blob
        case .tags: .tags
        case .referrers: .referrers
        case .status: .status
        case .blobUpload, .catalog, .notFound, .admin: .other
        }
    }
}
