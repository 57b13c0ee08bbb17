import AsyncHTTPClient
import NIOCore
import NIOPosix

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

    /// A short reason for a failed request: "connection refused", "no connection within 3 s", or the error.
    static func reason(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            if error == .connectTimeout { return "no connection within \(Self.connectTimeout.nanoseconds / 1_000_000_000) s" }
            if error == .deadlineExceeded { return "no answer in time" }
        }
        let text = String(describing: error)
        return text.contains("Connection refused") ? "connection refused" : text
    }
}

/// A command's failure, printed as `Error: <message>` with exit status 1 (no usage text).
struct CommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
