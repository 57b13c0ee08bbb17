import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import OCIDistribution
import Synchronization
import WharfClock

/// Token authentication: the `Authorization` value for a scope, and token fetches at the realm.
extension UpstreamClient {
    /// The `Authorization` value for `scope`; a token fetch it needs must begin answering by `deadline`.
    func authorization(scope: String, refresh: Bool, identity: UpstreamIdentity, deadline: ContinuousClock.Instant) async throws -> String? {
        guard let challenge = self.machine.withLock({ $0.challenge }) else { return nil }
        let credentials: UpstreamCredentials?
        switch identity {
        case .mirror: credentials = self.configuration.credentials
        case .client(let c): credentials = c
        }
        if challenge.scheme == "basic" { return credentials?.basicAuthorization }
        guard let realm = challenge.realm else { return nil }
        let service = challenge.service ?? ""
        let sendCredentials = credentials != nil && self.realms.mayReceiveCredentials(realm)
        if credentials != nil, !sendCredentials {
            self.logger.notice("token realm not trusted with credentials; asking anonymously", metadata: ["realm": "\(Self.origin(of: realm))"])
        }
        // Keyed by identity (a hash for clients), so a token fetched for one client never serves another.
        let key = TokenCache.Key(realm: realm, service: service, scope: scope, identity: sendCredentials ? identity.cacheKey : "")
        do {
            let token = try await self.tokens.token(for: key, invalidate: refresh) { [self] in
                try await self.fetchToken(realm: realm, service: service, scope: scope, credentials: sendCredentials ? credentials : nil, deadline: deadline)
            }
            return "Bearer " + token
        } catch let error where !(error is UpstreamCredentialsRejected || error is CancellationError || (error as? HTTPClientError) == .cancelled) {
            if self.machine.withLock({ $0.tokenFetchFailed(now: .now) }) {
                self.logger.notice("no token from the upstream's realm; asking /v2/ for its challenge again", metadata: ["realm": "\(Self.origin(of: realm))"])
                self.relearnChallenge()
            }
            throw error
        }
    }

    private func fetchToken(
        realm: String, service: String, scope: String, credentials: UpstreamCredentials?, deadline firstByte: ContinuousClock.Instant
    ) async throws -> TokenCache.Entry {
        guard var components = URLComponents(string: realm), components.scheme == "https" || components.scheme == "http" else {
            throw UpstreamUnreachable(description: "upstream token realm is not an http(s) URL")
        }
        var items = components.queryItems ?? []
        if !service.isEmpty { items.append(URLQueryItem(name: "service", value: service)) }
        items.append(URLQueryItem(name: "scope", value: scope))
        if let credentials { items.append(URLQueryItem(name: "account", value: credentials.username)) }
        components.queryItems = items
        guard let url = components.string else { throw UpstreamUnreachable(description: "bad token realm") }
        let key = UpstreamRequestKey(kind: .token, repository: Self.repository(ofScope: scope), reference: scope)
        let trial = try self.admit(key)
        defer { self.machine.withLock { $0.finished(.token, trial: trial) } }
        var headers = HTTPHeaders()
        if let credentials { headers.add(name: "Authorization", value: credentials.basicAuthorization) }
        let started = self.clock.now()
        let deadline = ContinuousClock.now + self.configuration.bodyTimeout
        let response = try await self.execute(
            .GET, url: url, headers: headers, authorization: nil, deadline: min(firstByte, deadline), exchange: Exchange(key: key, trial: trial),
            foreign: false)
        let body = try await UpstreamResponse.collect(response.body, upTo: 1 << 20, deadline: deadline)
        guard response.status == .ok else {
            if credentials != nil, response.status == .unauthorized || response.status == .forbidden { throw UpstreamCredentialsRejected() }
            throw UpstreamUnreachable(description: "token endpoint answered \(response.status.code)")
        }
        let parsed = try JSONDecoder().decode(TokenResponse.self, from: Data(body.readableBytesView))
        guard let token = parsed.access_token ?? parsed.token, Self.isUsableToken(token) else {
            throw UpstreamUnreachable(description: "token endpoint returned no usable token")
        }
        let lifetime = max(1, parsed.expires_in ?? 60)
        let margin = min(30.0, Double(lifetime) / 2)
        return TokenCache.Entry(token: token, refreshAt: started + .milliseconds(Int64((Double(lifetime) - margin) * 1000)))
    }

    private struct TokenResponse: Decodable {
        let token: String?
        let access_token: String?
        let expires_in: Int?
    }

    /// Whether `token` can go in an `Authorization: Bearer` header as it is: 1 to 64 KiB of visible
    /// ASCII. Anything else (CR, LF, NUL, spaces, a megabyte) is refused at once, not cached and sent
    /// on every request until it expires.
    static func isUsableToken(_ token: String) -> Bool {
        let bytes = token.utf8
        return !bytes.isEmpty && bytes.count <= 64 << 10 && bytes.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }

    /// `team/app` of `repository:team/app:pull`.
    static func repository(ofScope scope: String) -> String? {
        guard scope.hasPrefix("repository:"), let last = scope.lastIndex(of: ":") else { return nil }
        let start = scope.index(scope.startIndex, offsetBy: "repository:".count)
        return start < last ? String(scope[start..<last]) : nil
    }
}
