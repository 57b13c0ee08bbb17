import Logging
import NIOCore
import NIOHTTP1
import OCIDistribution
import Synchronization
import WharfAuth
import WharfMirror

/// Routes one request to the handler for its endpoint and writes the access log line.
///
/// Blob serving (``BlobEndpoint``) is kept apart from tag/manifest resolution (``ManifestEndpoint``),
/// so blob GETs can later be answered by a separate cache node.
struct RegistryHandler: Sendable {
    let mirror: Mirror
    let auth: ClientAuthenticator
    let edge: EdgeSettings?
    let logger: Logger
    let manifests: ManifestEndpoint
    let blobs: BlobEndpoint
    let metadata: MetadataEndpoint
    let status: StatusEndpoint
    private static let requestCounter = Atomic<UInt64>(0)

    init(mirror: Mirror, auth: ClientAuthenticator, edge: EdgeSettings? = nil, logger: Logger) {
        self.mirror = mirror
        self.auth = auth
        self.edge = edge
        self.logger = logger
        let access = RequestAccess(mirror: mirror, auth: auth)
        self.manifests = ManifestEndpoint(mirror: mirror, access: access)
        self.blobs = BlobEndpoint(mirror: mirror, access: access, edge: edge)
        self.metadata = MetadataEndpoint(mirror: mirror, access: access)
        self.status = StatusEndpoint(mirror: mirror)
    }

    func handle(_ head: HTTPRequestHead, _ writer: ResponseWriter) async throws {
        let started = ContinuousClock.now
        let id = Self.nextRequestID()
        var kind = MirrorStats.RequestKind.other
        defer {
            let elapsed = ContinuousClock.now - started
            self.mirror.stats.request(kind, duration: elapsed)
            let micros = elapsed / .microseconds(1)
            self.logger.info("request", metadata: [
                "id": "\(id)", "method": "\(head.method.rawValue)", "path": "\(head.uri.prefix(512))", "status": "\(writer.status)",
                "bytes": "\(writer.bytes)", "us": "\(Int(micros))", "cache": "\(writer.outcome)",
            ])
        }
        do {
            try await self.dispatch(head, writer, kind: &kind)
        } catch let error as RegistryError {
            guard writer.status == 0 else { throw AbortResponse(reason: "\(error)") }
            try await writer.sendError(error)
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
                self.mirror.stats.authRefusals.add()
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
            let showNames = page == .stats || page == .dashboard ? try await self.mayListRepositories(head, target, writer) : false
            try await self.status.serve(page, writer: writer, showNames: showNames)
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
            self.mirror.stats.authRefusals.add()
            throw error
        }
    }

    /// Request ids for the access log, shared with ``HitPath``.
    static func nextRequestID() -> UInt64 { Self.requestCounter.add(1, ordering: .relaxed).newValue }

    private static func kind(of route: Route) -> MirrorStats.RequestKind {
        switch route {
        case .base: .base
        case .manifest: .manifest
        case .blob: .blob
        case .tags: .tags
        case .referrers: .referrers
        case .status: .status
        case .blobUpload, .catalog, .notFound: .other
        }
    }
}
