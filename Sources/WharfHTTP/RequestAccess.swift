import OCIDistribution
import WharfAuth
import WharfMirror

/// Turns a request's repository into an upstream route the client may read: parses the name, routes
/// it (`ns`, path prefix, default), applies the repository policy, and in pass-through mode asks
/// the upstream whether this client may pull it.
struct RequestAccess: Sendable {
    let mirror: Mirror
    let auth: ClientAuthenticator

    func route(_ name: RepositoryName, _ writer: ResponseWriter) async throws -> RoutedRequest {
        let routed = try self.mirror.route(name, namespace: writer.namespace)
        do {
            try await self.auth.authorizePull(identity: writer.identity, upstream: routed.client, repository: routed.repository)
        } catch {
            self.mirror.stats.authRefusals.add()
            throw error
        }
        return routed
    }
}
