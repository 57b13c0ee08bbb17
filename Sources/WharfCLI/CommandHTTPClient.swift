#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import AsyncHTTPClient
import NIOCore
import NIOPosix
import WharfConfig

/// The HTTP client of the commands that talk to a running Wharf (`warm`, `export`, `stats`).
///
/// Each run gets a client on its own one-thread event loop group, and both are shut down, the client
/// first and then the group, before the command returns (whether it succeeded or threw). The process
/// therefore never exits while a NIO thread or a pooled connection is still live: exiting under them
/// races the runtime's teardown against their work. A refused connection fails at once and an
/// unanswered one after ``connectTimeout``, instead of being retried until the request's deadline.
enum CommandHTTPClient {
    /// How long a connection attempt may take before the command gives up on the server.
    static let connectTimeout: TimeAmount = .seconds(3)

    /// The default `--url`.
    static let defaultURL = "http://127.0.0.1:5000"

    /// Redirects followed (an edge answers blob GETs with a 307); a stall of two minutes without a
    /// byte ends a request.
    static var configuration: HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: Self.connectTimeout, read: .seconds(120))
        configuration.connectionPool.retryConnectionEstablishment = false
        return configuration
    }

    /// Runs `body` with a fresh client and shuts down the client and then its event loop group.
    /// - Returns: what `body` returns.
    /// - Throws: what `body` throws; otherwise a failure to shut down.
    static func run<Result: Sendable>(_ body: (HTTPClient) async throws -> Result) async throws -> Result {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = HTTPClient(eventLoopGroup: group, configuration: Self.configuration)
        let outcome: Swift.Result<Result, any Error>
        do {
            outcome = .success(try await body(client))
        } catch {
            outcome = .failure(error)
        }
        var shutdownError: (any Error)?
        do { try await client.shutdown() } catch { shutdownError = error }
        do { try await group.shutdownGracefully() } catch { shutdownError = shutdownError ?? error }
        let result = try outcome.get()
        if let shutdownError { throw shutdownError }
        return result
    }

    /// `--url` as a base URL: `HOST:PORT` means `http://HOST:PORT`; trailing `/` dropped.
    /// - Throws: a `ValidationError` naming `--url`.
    static func baseURL(_ text: String) throws -> String {
        do { return try CommandLineValues.serverURL(text) } catch { throw ValidationError("--url: \(error)") }
    }

    /// The failure of a command that could not talk to the Wharf at `base`: the address, why, and
    /// what to check.
    static func unreachable(_ base: String, _ error: any Error) -> CommandError {
        let why: String
        switch Self.cause(error) {
        case .refused:
            why = "connection refused (nothing listens there); is `wharf serve` running on that host and port?"
        case .connectTimeout:
            why = "no connection within \(Self.connectTimeout.nanoseconds / 1_000_000_000) s (the host does not answer: a wrong address, or a firewall?)"
        case .noAnswer:
            why = "it accepted the connection but did not answer in time; is it a Wharf, and is it overloaded?"
        case .unresolved(let host):
            why = "cannot resolve the host name '\(host)'"
        case .tls(let detail):
            why = "TLS failed (\(detail)); if it serves plain HTTP, use http://"
        case .other(let text):
            why = text
        }
        return CommandError("cannot reach a Wharf at \(base): \(why)\nCheck --url (default \(Self.defaultURL)).")
    }

    enum Cause: Equatable {
        case refused, connectTimeout, noAnswer, unresolved(String), tls(String), other(String)
    }

    /// What went wrong, from AsyncHTTPClient's and NIO's errors (they nest the socket's errno).
    static func cause(_ error: any Error) -> Cause {
        if let error = error as? HTTPClientError {
            if error == .connectTimeout { return .connectTimeout }
            if error == .deadlineExceeded || error == .readTimeout { return .noAnswer }
        }
        if let io = error as? IOError, io.errnoCode == ECONNREFUSED { return .refused }
        if let connection = error as? NIOConnectionError {
            if connection.connectionErrors.contains(where: { ($0.error as? IOError)?.errnoCode == ECONNREFUSED }) { return .refused }
            if connection.connectionErrors.isEmpty, connection.dnsAError != nil || connection.dnsAAAAError != nil { return .unresolved(connection.host) }
        }
        if let address = error as? SocketAddressError, case .unknown(let host, _) = address { return .unresolved(host) }
        let text = String(describing: error)
        if text.contains("Connection refused") { return .refused }
        if text.contains("SSL") || text.contains("TLS") || text.contains("handshake") { return .tls(text) }
        return .other(text)
    }
}

/// A command's failure, printed as `Error: <message>` with exit status 1 (no usage text).
struct CommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
