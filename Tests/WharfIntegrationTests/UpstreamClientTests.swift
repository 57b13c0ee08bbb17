import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import Testing
import WharfTestSupport
@testable import WharfUpstream

/// The upstream client's auth and redirect rules, against in-process fake servers.
@Suite(.timeLimit(.minutes(2)), .tags(.integration))
struct UpstreamClientTests {
    final class Recorder: Sendable {
        let requests = Mutex<[LoopbackHTTPRequest]>([])
        func add(_ r: LoopbackHTTPRequest) { self.requests.withLock { $0.append(r) } }
        func count(_ path: String) -> Int { self.requests.withLock { $0.filter { $0.path == path }.count } }
        var all: [LoopbackHTTPRequest] { self.requests.withLock { $0 } }
    }

    static let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    /// A registry that wants Bearer tokens from its own /token and redirects blobs to `cdnPort`.
    static func fakeRegistry(recorder: Recorder, cdnPort: @escaping @Sendable () -> Int, scheme: String = "Bearer") -> LoopbackHTTPServer {
        LoopbackHTTPServer { request in
            recorder.add(request)
            let host = request.headers.first(name: "host") ?? "127.0.0.1"
            let auth = request.headers.first(name: "authorization")
            if request.path == "/token" {
                try? await Task.sleep(for: .milliseconds(50))
                return .json(.ok, #"{"token":"tok-1","expires_in":300}"#)
            }
            let challenge = scheme == "Bearer"
                ? #"Bearer realm="http://\#(host)/token",service="fake",scope="repository:r:pull""#
                : #"Basic realm="fake""#
            let expected = scheme == "Bearer" ? "Bearer tok-1" : UpstreamCredentials(username: "u", password: "p").basicAuthorization
            guard auth == expected else {
                return .json(.unauthorized, #"{"errors":[{"code":"UNAUTHORIZED"}]}"#, headers: ["WWW-Authenticate": challenge])
            }
            if request.path.hasPrefix("/v2/r/blobs/") {
                return LoopbackHTTPResponse(status: .temporaryRedirect, headers: ["Location": "http://127.0.0.1:\(cdnPort())/cdn/blob?sig=1"])
            }
            return .json(.ok, "{}")
        }
    }

    @Test("blob redirects are followed to another host without the Authorization header; tokens are fetched once")
    func redirectsDropAuthorization() async throws {
        let registryLog = Recorder(), cdnLog = Recorder()
        let cdn = LoopbackHTTPServer { request in
            cdnLog.add(request)
            return LoopbackHTTPResponse(status: .ok, headers: ["Content-Length": "5"], body: ByteBuffer(string: "hello"))
        }
        try await cdn.start()
        let registry = Self.fakeRegistry(recorder: registryLog, cdnPort: { cdn.port })
        try await registry.start()
        let http = UpstreamHTTPClients.make()
        do {
            let client = UpstreamClient(
                configuration: try UpstreamConfiguration(url: "http://127.0.0.1:\(registry.port)"), httpClients: http, logger: Self.logger)
            let digest = "sha256:" + String(repeating: "a", count: 64)
            let bodies = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        let r = try await client.send(.GET, repository: "r", path: "blobs/\(digest)")
                        #expect(r.status == 200)
                        return String(buffer: try await r.collect(upTo: 1024))
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(bodies == Array(repeating: "hello", count: 20))
            #expect(registryLog.count("/token") == 1, "token fetched \(registryLog.count("/token")) times")
            #expect(cdnLog.all.count == 20)
            #expect(cdnLog.all.allSatisfy { $0.headers.first(name: "authorization") == nil }, "Authorization leaked to the redirect host")
        } catch {
            Issue.record(error)
        }
        try? await http.shutdown()
        await registry.stop()
        await cdn.stop()
    }

    @Test("a Basic challenge is answered with the configured credentials")
    func basicChallenge() async throws {
        let log = Recorder()
        let registry = Self.fakeRegistry(recorder: log, cdnPort: { 1 }, scheme: "Basic")
        try await registry.start()
        let http = UpstreamHTTPClients.make()
        do {
            let config = try UpstreamConfiguration(url: "http://127.0.0.1:\(registry.port)", credentials: .init(username: "u", password: "p"))
            let client = UpstreamClient(configuration: config, httpClients: http, logger: Self.logger)
            let r = try await client.send(.GET, repository: "r", path: "manifests/latest")
            #expect(r.status == 200)
        } catch {
            Issue.record(error)
        }
        try? await http.shutdown()
        await registry.stop()
    }

    @Test("credentials files and environment")
    func credentials() throws {
        let path = NSTemporaryDirectory() + "wharf-creds-\(UUID().uuidString)"
        try "alice:s3cr:et\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let c = try UpstreamCredentials.load(file: path)
        #expect(c.username == "alice" && c.password == "s3cr:et")
        #expect(!"\(c)".contains("s3cr"))
        #expect(UpstreamCredentials.fromEnvironment(["WHARF_UPSTREAM_USERNAME": "bob", "WHARF_UPSTREAM_PASSWORD": "x"])?.username == "bob")
        #expect(UpstreamCredentials.fromEnvironment([:]) == nil)
        #expect(try UpstreamConfiguration(url: "https://registry-1.docker.io/").isDockerHub)
        #expect(throws: ConfigurationError.self) { try UpstreamConfiguration(url: "ftp://x") }
    }
}
