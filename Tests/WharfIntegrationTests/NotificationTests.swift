import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import Testing
import WharfMirror
import WharfTestSupport
import WharfUpstream

/// Webhooks: events reach a local receiver signed, retried after a failure, and never hold up a pull.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct NotificationTests {
    struct Received: Sendable { let event: String; let body: [String: String]; let signatureValid: Bool }

    @Test("blob filled, tag pulled, eviction and upstream down/up arrive signed; a refused delivery is retried")
    func webhooksArrive() async throws {
        let secret = Array("webhook-secret-for-tests".utf8)
        let received = Mutex<[Received]>([])
        let attempts = Atomic<Int>(0)
        let receiver = LoopbackHTTPServer { request in
            // The very first delivery is refused: it must come again.
            if attempts.add(1, ordering: .relaxed).newValue == 1 { return LoopbackHTTPResponse(status: .internalServerError) }
            let body = Array(request.body.readableBytesView)
            let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret)).map { String(format: "%02x", $0) }.joined()
            let json = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
            received.withLock {
                $0.append(Received(
                    event: request.headers.first(name: "x-wharf-event") ?? "", body: json.mapValues { "\($0)" },
                    signatureValid: request.headers.first(name: "x-wharf-signature") == "sha256=" + mac))
            }
            return LoopbackHTTPResponse(status: .noContent)
        }
        try await receiver.start()
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [900_000, 700_000], format: .dockerSchema2)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try await upstream.start()
        let wharf = try await WharfInstance.start(
            upstreams: [MirrorUpstream(configuration: try UpstreamConfiguration(name: "hub", url: upstream.registry.url), isDefault: true)],
            maxSize: 1_200_000,
            notifier: { http, logger in
                Notifier(endpoints: [.init(url: "http://127.0.0.1:\(receiver.port)/hook", secret: secret)], httpClient: http,
                         retryDelays: [.milliseconds(100), .milliseconds(200)], logger: logger)
            })
        do {
            let out = try TempDirectory.make("hooks")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let pulled = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app:v1", destinationDirectory: out + "/a")
            #expect(pulled.status == 0, "\(pulled.output)")
            try await upstream.registry.stop()
            _ = try await RawHTTP.request("GET /v2/team/other/manifests/v1 HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            func events() -> [Received] { received.withLock { $0 } }
            for _ in 0..<300 {
                let names = Set(events().map(\.event))
                if names.isSuperset(of: ["blob.filled", "tag.pulled", "cache.evicted", "upstream.down"]) { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            let all = events()
            let allSigned = all.allSatisfy { $0.signatureValid }
            #expect(allSigned, "unsigned or badly signed deliveries")
            let filled = all.filter { $0.event == "blob.filled" }.compactMap { $0.body["digest"] }
            #expect(Set(filled) == Set(image.blobs.map(\.digest)), "blob.filled: \(filled)")
            #expect(all.contains { $0.event == "tag.pulled" && $0.body["repository"] == "team/app" && $0.body["tag"] == "v1"
                && $0.body["digest"] == image.manifest.digest })
            #expect(all.contains { $0.event == "cache.evicted" })
            #expect(all.contains { $0.event == "upstream.down" && $0.body["upstream"] == "hub" })
            #expect(attempts.load(ordering: .relaxed) > all.count, "the refused delivery was retried")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
        try? await receiver.stop()
    }
}
