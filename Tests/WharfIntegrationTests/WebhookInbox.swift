import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import WharfTestSupport

/// A local webhook receiver that records every delivery and checks its signature against the
/// secret expected for the path it was posted to.
final class WebhookInbox: Sendable {
    struct Delivery: Sendable {
        let path: String
        let event: String
        let body: [String: String]
        /// `X-Wharf-Signature` is the HMAC-SHA256 of the body under the path's secret (absent when it has none).
        let signatureValid: Bool
    }

    private let deliveries: Deliveries
    private let server: LoopbackHTTPServer

    /// - Parameter secrets: path → secret; a path not listed expects no signature.
    init(secrets: [String: [UInt8]]) {
        let deliveries = Deliveries()
        self.deliveries = deliveries
        self.server = LoopbackHTTPServer { request in
            let body = Array(request.body.readableBytesView)
            let signature = request.headers.first(name: "x-wharf-signature")
            let valid: Bool
            if let secret = secrets[request.path] {
                let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret)).map { String(format: "%02x", $0) }.joined()
                valid = signature == "sha256=" + mac
            } else {
                valid = signature == nil
            }
            let json = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
            deliveries.list.withLock {
                $0.append(Delivery(
                    path: request.path, event: request.headers.first(name: "x-wharf-event") ?? "", body: json.mapValues { "\($0)" },
                    signatureValid: valid))
            }
            return LoopbackHTTPResponse(status: .noContent)
        }
    }

    private final class Deliveries: Sendable {
        let list = Mutex<[Delivery]>([])
    }

    var port: Int { self.server.port }
    func url(_ path: String) -> String { "http://127.0.0.1:\(self.port)\(path)" }
    var all: [Delivery] { self.deliveries.list.withLock { $0 } }

    func start() async throws { try await self.server.start() }
    func stop() async { await self.server.stop() }

    /// Waits (up to `timeout`) until `done` holds for the deliveries so far; returns them.
    @discardableResult
    func wait(timeout: Duration = .seconds(15), until done: ([Delivery]) -> Bool) async throws -> [Delivery] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, !done(self.all) { try await Task.sleep(for: .milliseconds(20)) }
        return self.all
    }
}
