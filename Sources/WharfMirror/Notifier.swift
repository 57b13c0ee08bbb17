import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// Webhook notifications: blob filled, tag pulled, eviction, upstream down/up.
///
/// ``emit(_:)`` only queues (bounded; the oldest events are dropped when receivers fall far behind),
/// so a pull never waits for a receiver. ``run()`` delivers in order: a JSON `POST` per event and
/// endpoint whose filter takes it, `X-Wharf-Event`, `X-Wharf-Delivery` and, with a secret, `X-Wharf-Signature:
/// sha256=<hex HMAC-SHA256 of the body>`; failures (transport or non-2xx) are retried with backoff.
public final class Notifier: Sendable {
    /// One receiver: its URL, the secret that signs its bodies, and which events it gets (nil: all).
    public struct Endpoint: Sendable {
        public let url: String
        public let secret: [UInt8]?
        public let events: Set<String>?
        public init(url: String, secret: [UInt8]?, events: Set<String>? = nil) {
            self.url = url
            self.secret = secret
            self.events = events
        }
    }

    /// The `X-Wharf-Event` names of every event, for filters.
    public static let eventNames = ["blob.filled", "tag.pulled", "cache.evicted", "upstream.down", "upstream.up"]

    public enum Event: Sendable {
        case blobFilled(digest: String, size: Int64, upstream: String, repository: String)
        case tagPulled(upstream: String, repository: String, tag: String, digest: String)
        case evicted(blobs: Int, bytes: Int64)
        case upstreamDown(upstream: String, reason: String)
        case upstreamUp(upstream: String)

        var name: String {
            switch self {
            case .blobFilled: "blob.filled"
            case .tagPulled: "tag.pulled"
            case .evicted: "cache.evicted"
            case .upstreamDown: "upstream.down"
            case .upstreamUp: "upstream.up"
            }
        }

        var fields: [String: Any] {
            switch self {
            case .blobFilled(let d, let s, let u, let r): ["digest": d, "size": s, "upstream": u, "repository": r]
            case .tagPulled(let u, let r, let t, let d): ["upstream": u, "repository": r, "tag": t, "digest": d]
            case .evicted(let b, let n): ["blobs": b, "bytes": n]
            case .upstreamDown(let u, let reason): ["upstream": u, "reason": reason]
            case .upstreamUp(let u): ["upstream": u]
            }
        }
    }

    /// The receivers now (``replaceEndpoints(_:)`` swaps them when the configuration is reloaded).
    public var endpoints: [Endpoint] { self.receivers.withLock { $0 } }
    private let receivers: Mutex<[Endpoint]>
    private let stream: AsyncStream<(Event, Date)>
    private let continuation: AsyncStream<(Event, Date)>.Continuation
    private let http: HTTPClient?
    private let retryDelays: [Duration]
    private let logger: Logger

    /// No endpoints: every emit is dropped at once.
    public static func disabled(logger: Logger) -> Notifier { Notifier(endpoints: [], httpClient: nil, logger: logger) }

    public init(endpoints: [Endpoint], httpClient: HTTPClient?, retryDelays: [Duration] = [.seconds(1), .seconds(5), .seconds(30)],
                queueLimit: Int = 10_000, logger: Logger) {
        self.receivers = Mutex(endpoints)
        self.http = httpClient
        self.retryDelays = retryDelays
        self.logger = logger
        (self.stream, self.continuation) = AsyncStream.makeStream(of: (Event, Date).self, bufferingPolicy: .bufferingNewest(queueLimit))
    }

    public var isEnabled: Bool { !self.endpoints.isEmpty }

    /// Replaces the receivers; false when this notifier has no HTTP client to deliver with.
    @discardableResult
    public func replaceEndpoints(_ endpoints: [Endpoint]) -> Bool {
        guard self.http != nil else { return false }
        self.receivers.withLock { $0 = endpoints }
        return true
    }

    /// Queues an event; never blocks.
    /// Queues `event`; it is not even built when no receiver is configured (tag hits emit on every pull).
    public func emit(_ event: @autoclosure () -> Event) {
        guard self.isEnabled else { return }
        self.continuation.yield((event(), Date()))
    }

    /// Delivers queued events until cancelled.
    public func run() async {
        guard let http = self.http else { return }  // with a client it runs even without receivers: a reload may add some
        await withTaskCancellationHandler {
            for await (event, at) in self.stream {
                var body = event.fields
                body["event"] = event.name
                body["time"] = ISO8601DateFormatter().string(from: at)
                guard let json = try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]) else { continue }
                for endpoint in self.endpoints where endpoint.events?.contains(event.name) ?? true {
                    await self.deliver(Array(json), event: event.name, to: endpoint, http: http)
                }
            }
        } onCancel: {
            self.continuation.finish()
        }
    }

    private func deliver(_ body: [UInt8], event: String, to endpoint: Endpoint, http: HTTPClient) async {
        let delivery = UUID().uuidString
        for attempt in 0...self.retryDelays.count {
            var request = HTTPClientRequest(url: endpoint.url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "User-Agent", value: "wharf-notifier/1")
            request.headers.add(name: "X-Wharf-Event", value: event)
            request.headers.add(name: "X-Wharf-Delivery", value: delivery)
            if let secret = endpoint.secret {
                let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret))
                request.headers.add(name: "X-Wharf-Signature", value: "sha256=" + mac.map { String(format: "%02x", $0) }.joined())
            }
            request.body = .bytes(ByteBuffer(bytes: body))
            do {
                let response = try await http.execute(request, timeout: .seconds(10))
                _ = try? await response.body.collect(upTo: 64 * 1024)
                if (200..<300).contains(response.status.code) { return }
                self.logger.notice("webhook refused", metadata: ["event": "\(event)", "status": "\(response.status.code)", "attempt": "\(attempt + 1)"])
            } catch {
                self.logger.notice("webhook failed", metadata: ["event": "\(event)", "error": "\(error)", "attempt": "\(attempt + 1)"])
            }
            guard attempt < self.retryDelays.count, !Task.isCancelled else { break }
            try? await Task.sleep(for: self.retryDelays[attempt])
        }
        self.logger.warning("webhook given up", metadata: ["event": "\(event)", "url": "\(endpoint.url)"])
    }
}
