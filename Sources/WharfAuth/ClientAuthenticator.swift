import Foundation
import Logging
import OCIDistribution
import WharfUpstream

/// Who may use the mirror, and with whose upstream rights (`--client-auth`).
///
/// - `open`: anyone; upstream requests use the mirror's configured credentials.
/// - `htpasswd`: clients must present a user from the htpasswd file (Basic auth); upstream requests
///   still use the mirror's credentials.
/// - `passthrough`: a client's own Basic credentials are exchanged at the upstream's token endpoint;
///   every repository a client reads (cached or not) is first confirmed with the upstream for that
///   client (see ``AccessDecisions``).
public final class ClientAuthenticator: Sendable {
    public enum Mode: String, Sendable, CaseIterable {
        case open, htpasswd, passthrough
    }

    public let mode: Mode
    public let realm: String
    /// Whether htpasswd/passthrough credentials may arrive over plain HTTP.
    public let allowWithoutTLS: Bool
    public let htpasswd: HtpasswdFile?
    public let decisions: AccessDecisions
    /// htpasswd users who see repository names on `/stats` and `/` (htpasswd and pass-through modes).
    public let admins: Set<String>
    private let logger: Logger

    public init(
        mode: Mode, htpasswd: HtpasswdFile? = nil, realm: String = "wharf", allowWithoutTLS: Bool = false,
        decisions: AccessDecisions = AccessDecisions(), admins: Set<String> = [], logger: Logger
    ) {
        precondition(mode != .htpasswd || htpasswd != nil, "htpasswd mode needs an htpasswd file")
        self.mode = mode
        self.htpasswd = htpasswd
        self.realm = realm
        self.allowWithoutTLS = allowWithoutTLS
        self.decisions = decisions
        self.admins = admins
        self.logger = logger
    }

    public static func open(logger: Logger) -> ClientAuthenticator { ClientAuthenticator(mode: .open, logger: logger) }

    /// The 401 that asks a client for Basic credentials (never the upstream's challenge).
    public func challenge(_ message: String) -> RegistryError {
        RegistryError(.unauthorized, message, headers: [("WWW-Authenticate", "Basic realm=\(JSONString.quote(self.realm))")])
    }

    /// Checks the request's `Authorization` header and returns the identity its upstream requests use.
    /// `client` is the connection's IP address (failed logins are limited per address).
    /// `requireCredentials` is set for `/v2/`, where pass-through asks clients to identify themselves.
    public func authenticate(
        authorization: String?, isSecure: Bool, client: String, requireCredentials: Bool = false
    ) async throws(RegistryError) -> UpstreamIdentity {
        if self.mode == .open { return .mirror }
        guard isSecure || self.allowWithoutTLS else {
            throw RegistryError(.denied, "this mirror accepts credentials only over HTTPS; use its TLS listener")
        }
        let credentials = try Self.basicCredentials(authorization, challenge: self.challenge)
        switch self.mode {
        case .open:
            return .mirror
        case .htpasswd:
            guard let credentials else { throw self.challenge("authentication required") }
            try await self.verify(credentials, htpasswd: self.htpasswd!, client: client)
            return .mirror
        case .passthrough:
            if credentials == nil, requireCredentials { throw self.challenge("send your upstream registry credentials (or none, for public images)") }
            return .client(credentials)
        }
    }

    /// Whether the caller of `/stats` or `/` may see repository names. Open mode: everyone (anyone may
    /// pull anything). Otherwise only users in ``admins``, checked against the htpasswd file. No
    /// credentials (or no admins configured) means no names, not an error, so probes and scrapers
    /// keep working; wrong credentials get the same 401, 429 or 503 as on the registry API.
    public func seesRepositoryNames(authorization: String?, isSecure: Bool, client: String) async throws(RegistryError) -> Bool {
        if self.mode == .open { return true }
        guard let header = authorization, !header.trimmingCharacters(in: .whitespaces).isEmpty else { return false }
        guard isSecure || self.allowWithoutTLS else {
            throw RegistryError(.denied, "this mirror accepts credentials only over HTTPS; use its TLS listener")
        }
        guard let credentials = try Self.basicCredentials(header, challenge: self.challenge), let htpasswd = self.htpasswd, !self.admins.isEmpty else { return false }
        try await self.verify(credentials, htpasswd: htpasswd, client: client)
        return self.admins.contains(credentials.username)
    }

    /// Throws the answer for credentials the htpasswd file does not accept right now.
    private func verify(_ credentials: UpstreamCredentials, htpasswd: HtpasswdFile, client: String) async throws(RegistryError) {
        switch await htpasswd.verify(user: credentials.username, password: credentials.password, client: client) {
        case .valid:
            return
        case .invalid:
            self.logger.notice("client authentication failed", metadata: ["user": "\(credentials.username.prefix(64))", "client": "\(client)"])
            throw self.challenge("invalid username or password")
        case .refused(let wait):
            throw RegistryError(
                .tooManyRequests, "too many failed logins from this address or for this user; try again later",
                headers: [("Retry-After", Self.seconds(wait))])
        case .busy:
            throw RegistryError(.unavailable, "too many logins are being checked; try again shortly", headers: [("Retry-After", "1")])
        }
    }

    /// Whole seconds, rounded up, at least 1 (for `Retry-After`).
    static func seconds(_ duration: Duration) -> String {
        let (whole, fraction) = duration.components
        return String(max(1, whole + (fraction > 0 ? 1 : 0)))
    }

    /// Pass-through: the upstream must grant `identity` pull on `repository` (cached briefly). No-op otherwise.
    public func authorizePull(identity: UpstreamIdentity, upstream: UpstreamClient, repository: String) async throws(RegistryError) {
        guard self.mode == .passthrough, case .client = identity else { return }
        switch await self.decisions.decide(identity: identity, upstream: upstream, repository: repository) {
        case .granted:
            return
        case .badCredentials:
            throw self.challenge("the upstream registry rejected your username or password")
        case .denied:
            if identity.isAnonymousClient { throw self.challenge("authentication required to pull \(repository)") }
            throw RegistryError(.denied, "the upstream registry does not grant you pull access to \(repository)")
        case .unknown:
            throw RegistryError(.unavailable, "cannot confirm your access to \(repository) with the upstream registry right now")
        }
    }

    /// `Basic base64(user:password)` → credentials; nil when absent or empty (anonymous). Anything
    /// else is refused with `challenge(reason)`: a 401 must say which scheme to use (RFC 9110 §11.6.1),
    /// so a client holding a stale Bearer token learns to send Basic. A control character (NUL
    /// included: bcrypt would stop reading the password there) makes the credentials malformed.
    static func basicCredentials(_ header: String?, challenge: (String) -> RegistryError) throws(RegistryError) -> UpstreamCredentials? {
        guard let header = header?.trimmingCharacters(in: .whitespaces), !header.isEmpty else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic" else {
            throw challenge("only Basic authentication is accepted here")
        }
        guard let data = Data(base64Encoded: String(parts[1]).trimmingCharacters(in: .whitespaces)),
              let text = String(data: data, encoding: .utf8), let colon = text.firstIndex(of: ":"),
              !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
        else { throw challenge("malformed Basic credentials") }
        let user = String(text[..<colon]), password = String(text[text.index(after: colon)...])
        if user.isEmpty && password.isEmpty { return nil }
        return UpstreamCredentials(username: user, password: password)
    }
}
