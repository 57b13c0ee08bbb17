import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// One request to ``TokenServer``, recorded for assertions.
public struct TokenRequestRecord: Sendable {
    /// The Basic-auth user, or `nil` for an anonymous request. For a rejected login this
    /// is the user name that was tried (and ``status`` is 401).
    public let user: String?
    /// Every requested scope, one element per scope (space-separated values are split).
    public let scopes: [String]
    /// The `service` query parameter, if any.
    public let service: String?
    /// The `account` query parameter, if any (Docker sends it with credentials).
    public let account: String?
    /// 200 when a token was issued, 401 for bad credentials.
    public let status: Int
    /// What the issued token grants (empty when none was issued).
    public let granted: [TokenAccess]
}

/// A Docker token-authentication server (distribution `docs/spec/auth/token.md`) whose
/// ES256 JWTs CNCF Distribution 2.8 accepts.
///
/// `GET /token?service=S&scope=repository:NAME:pull[&scope=...]` with optional
/// `Authorization: Basic`. Unknown users or wrong passwords get 401; no credentials means
/// anonymous. `pull` is granted on public repositories to everyone and on private ones
/// to their listed users; `push`, `delete` and `*` only to the user named `admin`, who
/// may also pull everything. Anything else is granted an empty action list, as
/// Distribution's token servers do. Other paths and methods get 404.
///
/// Distribution 2.8 allows 60 s of clock leeway on `exp` (and `nbf`), so a token stays
/// usable at the registry for about `lifetime + 60` s; ``setExpiryClaimOffset(_:)``
/// with `-60` makes the registry reject it right after `expires_in`.
public final class TokenServer: Sendable {
    public let service: String
    public let issuer: String
    private let users: [String: String]
    private let privateRepositories: [String: Set<String>]
    private let server: LoopbackHTTPServer

    private struct State {
        var lifetime: Int
        var expiryOffset = 0
        var signer: JWTSigner?
        var directory: String?
        var records: [TokenRequestRecord] = []
    }

    private let state: Mutex<State>

    /// - Parameters:
    ///   - users: user name → password.
    ///   - privateRepositories: repository name → users allowed to pull it. Repositories
    ///     not listed are public.
    ///   - tokenLifetime: `expires_in` and `exp - iat`, in seconds.
    public init(
        users: [String: String],
        privateRepositories: [String: Set<String>],
        tokenLifetime: Int = 300,
        issuer: String = "wharf-test-issuer",
        service: String = "wharf-test-registry"
    ) {
        self.users = users
        self.privateRepositories = privateRepositories
        self.issuer = issuer
        self.service = service
        self.state = Mutex(State(lifetime: tokenLifetime))
        let box = WeakTokenServer()
        self.server = LoopbackHTTPServer(requestHandler: { request in
            guard let server = box.value else { return LoopbackHTTPResponse(status: .serviceUnavailable) }
            return server.handle(request)
        })
        box.value = self
    }

    /// Creates the signing key and certificate (with `openssl`) and starts listening.
    public func start() async throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("wharf-token-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        state.withLock { $0.directory = directory }
        let keyPath = directory + "/key.pem"
        let certificatePath = directory + "/cert.pem"
        let openssl = try ChildProcess.spawn(
            executable: "/usr/bin/openssl",
            arguments: [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", keyPath, "-out", certificatePath, "-days", "2", "-subj", "/CN=wharf-test-token",
            ],
            outputPath: directory + "/openssl.log")
        let status: Int32
        do {
            status = try await openssl.waitForExit(timeout: .seconds(30))
        } catch {
            await openssl.terminate()
            throw error
        }
        guard status == 0 else { throw FixtureError.process("openssl failed (\(status)): \(openssl.output())") }
        let signer = try JWTSigner(
            keyPEM: String(contentsOfFile: keyPath, encoding: .utf8),
            certificatePEM: String(contentsOfFile: certificatePath, encoding: .utf8))
        state.withLock { $0.signer = signer }
        try await server.start()
    }

    /// Stops listening and deletes the key and certificate.
    public func stop() async throws {
        await server.stop()
        let directory = state.withLock { state -> String? in
            defer { state.directory = nil }
            return state.directory
        }
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    public var port: Int { server.port }
    /// `http://127.0.0.1:PORT/token`.
    public var realm: String { "http://127.0.0.1:\(port)/token" }
    /// PEM certificate the tokens are signed under; Distribution's `rootcertbundle`.
    /// Valid from ``start()`` until ``stop()``.
    public var certificatePath: String { (state.withLock { $0.directory } ?? "") + "/cert.pem" }
    /// Number of token requests received (including rejected logins).
    public var requestCount: Int { state.withLock { $0.records.count } }
    /// Every token request so far, oldest first.
    public var requests: [TokenRequestRecord] { state.withLock { $0.records } }

    /// Changes `expires_in` and the JWT lifetime for tokens issued from now on.
    public func setTokenLifetime(_ seconds: Int) {
        state.withLock { $0.lifetime = seconds }
    }

    /// Adds `seconds` to the `exp` claim only (not to `expires_in`). Use `-60` to cancel
    /// Distribution's 60 s leeway so the registry rejects a token as soon as it expires.
    public func setExpiryClaimOffset(_ seconds: Int) {
        state.withLock { $0.expiryOffset = seconds }
    }

    /// Issues a token directly, applying the same rules as `GET /token` (no HTTP request,
    /// nothing recorded). `user` is trusted as given.
    public func issueToken(user: String?, scopes: [String], service: String? = nil) throws -> String {
        let access = Self.parse(scopes: scopes).map { grant(user: user, requested: $0) }
        return try makeToken(user: user, access: access, service: service ?? self.service).token
    }

    // MARK: - Request handling

    private func handle(_ request: LoopbackHTTPRequest) -> LoopbackHTTPResponse {
        guard request.method == .GET, request.path == "/token" else {
            return .json(.notFound, #"{"errors":[{"code":"NOT_FOUND","message":"only GET /token is served"}]}"#)
        }
        let query = request.queryItems
        let scopes = query.filter { $0.name == "scope" }
            .flatMap { $0.value.split(separator: " ").map(String.init) }
        let requestedService = query.first { $0.name == "service" }?.value
        let account = query.first { $0.name == "account" }?.value

        var user: String?
        if let authorization = request.headers.first(name: "authorization") {
            guard let (name, password) = Self.basicCredentials(authorization),
                users[name] == password
            else {
                let tried = Self.basicCredentials(authorization)?.user
                record(TokenRequestRecord(
                    user: tried, scopes: scopes, service: requestedService, account: account, status: 401, granted: []))
                return .json(
                    .unauthorized,
                    #"{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password","detail":null}]}"#,
                    headers: ["www-authenticate": #"Basic realm="wharf-test-token""#])
            }
            user = name
        }

        let access = Self.parse(scopes: scopes).map { grant(user: user, requested: $0) }
        let issued: (token: String, lifetime: Int, issuedAt: Date)
        do {
            issued = try makeToken(user: user, access: access, service: requestedService ?? service)
        } catch {
            return .json(.internalServerError, #"{"errors":[{"code":"UNKNOWN","message":"signing failed"}]}"#)
        }
        record(TokenRequestRecord(
            user: user, scopes: scopes, service: requestedService, account: account, status: 200, granted: access))

        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        let body: [String: Any] = [
            "token": issued.token, "access_token": issued.token,
            "expires_in": issued.lifetime, "issued_at": formatter.string(from: issued.issuedAt),
        ]
        let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) ?? Data()
        return .json(.ok, String(decoding: data, as: UTF8.self))
    }

    private func record(_ record: TokenRequestRecord) {
        state.withLock { $0.records.append(record) }
    }

    private func makeToken(user: String?, access: [TokenAccess], service: String) throws
        -> (token: String, lifetime: Int, issuedAt: Date)
    {
        let (signer, lifetime, offset) = state.withLock { ($0.signer, $0.lifetime, $0.expiryOffset) }
        guard let signer else { throw FixtureError.state("TokenServer.start() has not been called") }
        let now = Date()
        let seconds = Int64(now.timeIntervalSince1970)
        let claims = JWTClaims(
            iss: issuer, sub: user ?? "", aud: service,
            exp: seconds + Int64(lifetime + offset), nbf: seconds - 1, iat: seconds,
            jti: UUID().uuidString, access: access)
        return (try signer.sign(claims), lifetime, now)
    }

    private func grant(user: String?, requested: TokenAccess) -> TokenAccess {
        let isAdmin = user == "admin"
        var granted: [String] = []
        for action in requested.actions where !granted.contains(action) {
            switch (requested.type, action) {
            case ("repository", "pull"):
                let allowed = privateRepositories[requested.name].map { readers in
                    user.map { readers.contains($0) } ?? false
                } ?? true
                if allowed || isAdmin { granted.append(action) }
            case ("repository", _), ("registry", _):
                if isAdmin { granted.append(action) }
            default:
                break
            }
        }
        return TokenAccess(type: requested.type, name: requested.name, actions: granted)
    }

    // MARK: - Parsing

    /// Parses `type[(class)]:name:actions` scopes. The name may contain `:` (host:port),
    /// so the type is split off at the first colon and the actions at the last one.
    /// Malformed scopes are ignored.
    static func parse(scopes: [String]) -> [TokenAccess] {
        scopes.compactMap { scope in
            guard let first = scope.firstIndex(of: ":"), let last = scope.lastIndex(of: ":"), first < last else {
                return nil
            }
            var type = String(scope[..<first])
            if let paren = type.firstIndex(of: "(") { type = String(type[..<paren]) }
            let name = String(scope[scope.index(after: first)..<last])
            let actions = scope[scope.index(after: last)...].split(separator: ",").map {
                $0.trimmingCharacters(in: .whitespaces)
            }.filter { !$0.isEmpty }
            guard !type.isEmpty, !name.isEmpty else { return nil }
            return TokenAccess(type: type, name: name, actions: actions)
        }
    }

    static func basicCredentials(_ header: String) -> (user: String, password: String)? {
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic",
            let data = Data(base64Encoded: String(parts[1]).trimmingCharacters(in: .whitespaces)),
            let decoded = String(data: data, encoding: .utf8),
            let colon = decoded.firstIndex(of: ":")
        else { return nil }
        return (String(decoded[..<colon]), String(decoded[decoded.index(after: colon)...]))
    }
}

/// Breaks the server ↔ handler reference cycle.
private final class WeakTokenServer: @unchecked Sendable {
    private let lock = Mutex<Void>(())
    private weak var _value: TokenServer?
    var value: TokenServer? {
        get { lock.withLock { _ in _value } }
        set { lock.withLock { _ in _value = newValue } }
    }
}
