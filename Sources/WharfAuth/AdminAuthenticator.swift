import Crypto
import Foundation
import Logging
import OCIDistribution
import WharfUpstream

/// Who may use the admin API (`admin` in the configuration): a user of its own htpasswd file (Basic),
/// or the bearer of its token. Like client authentication, credentials are refused on plain HTTP
/// unless `allowWithoutTLS`; failed logins are limited per address and user by the htpasswd file.
public final class AdminAuthenticator: Sendable {
    public let htpasswd: HtpasswdFile?
    private let tokenHash: [UInt8]?
    public let allowWithoutTLS: Bool
    private let logger: Logger
    static let realm = "wharf-admin"

    public init(htpasswd: HtpasswdFile?, token: String?, allowWithoutTLS: Bool, logger: Logger) {
        precondition(htpasswd != nil || token != nil, "the admin API needs an htpasswd file or a token")
        self.htpasswd = htpasswd
        self.tokenHash = token.map { Array(SHA256.hash(data: Data($0.utf8))) }
        self.allowWithoutTLS = allowWithoutTLS
        self.logger = logger
    }

    /// Reads the token from the first line of `path` (at least 16 characters).
    public static func token(file path: String) throws -> String {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let token = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard token.count >= 16 else { throw AdminTokenError(path: path) }
        return token
    }

    /// Returns the administrator's name (`token` for the bearer) or throws the answer: 403 on plain
    /// HTTP, 401 with a Basic challenge without or with wrong credentials, 429/503 from the login limits.
    public func authorize(authorization: String?, isSecure: Bool, client: String) async throws(RegistryError) -> String {
        guard isSecure || self.allowWithoutTLS else {
            throw RegistryError(.denied, "the admin API accepts credentials only over HTTPS; use a TLS listener")
        }
        let challenge = RegistryError(.unauthorized, "administrator credentials required", headers: [("WWW-Authenticate", "Basic realm=\"\(Self.realm)\"")])
        guard let header = authorization?.trimmingCharacters(in: .whitespaces), !header.isEmpty else { throw challenge }
        let parts = header.split(separator: " ", maxSplits: 1)
        if parts.count == 2, parts[0].lowercased() == "bearer", let expected = self.tokenHash {
            // Compared as hashes, so the time taken says nothing about the token.
            let given = Array(SHA256.hash(data: Data(parts[1].trimmingCharacters(in: .whitespaces).utf8)))
            guard zip(given, expected).reduce(0, { $0 | ($1.0 ^ $1.1) }) == 0 else {
                self.logger.notice("admin token refused", metadata: ["client": "\(client)"])
                throw challenge
            }
            return "token"
        }
        guard let credentials = try ClientAuthenticator.basicCredentials(header, challenge: { _ in challenge }), let htpasswd = self.htpasswd else { throw challenge }
        switch await htpasswd.verify(user: credentials.username, password: credentials.password, client: client) {
        case .valid:
            return credentials.username
        case .invalid:
            self.logger.notice("admin authentication failed", metadata: ["user": "\(credentials.username.prefix(64))", "client": "\(client)"])
            throw challenge
        case .refused(let wait):
            throw RegistryError(.tooManyRequests, "too many failed logins; try again later", headers: [("Retry-After", ClientAuthenticator.seconds(wait))])
        case .busy:
            throw RegistryError(.unavailable, "too many logins are being checked; try again shortly", headers: [("Retry-After", "1")])
        }
    }
}

/// The admin token file holds no usable token.
public struct AdminTokenError: Error, CustomStringConvertible {
    let path: String
    public var description: String { "admin token file \(self.path) must hold a token of at least 16 characters on its first line" }
}
