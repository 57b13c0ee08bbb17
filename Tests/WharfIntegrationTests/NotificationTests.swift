import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import Testing
import WharfConfig
import WharfMirror
import WharfTestSupport
import WharfUpstream

/// Webhooks: events reach a local receiver signed, retried after a failure, and never hold up a pull.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration, .realClients))
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
        await receiver.stop()
    }

    @Test("upstream.down when the registry stops, upstream.up once it is back on the same port; both signed, in order")
    func upstreamDownThenUp() async throws {
        let secret = Array("webhook-secret-for-tests".utf8)
        let inbox = WebhookInbox(secrets: ["/hook": secret])
        try await inbox.start()
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [20_000], format: .oci)
        for tag in ["v1", "v2"] { try upstream.storage.add(image: image, repository: "team/app", tag: tag) }
        try await upstream.start()
        let wharf = try await WharfInstance.start(
            upstreams: [MirrorUpstream(configuration: try UpstreamConfiguration(name: "hub", url: upstream.registry.url), isDefault: true)],
            notifier: { http, logger in Notifier(endpoints: [.init(url: inbox.url("/hook"), secret: secret)], httpClient: http, logger: logger) })
        do {
            let get = { (path: String) in try await RawHTTP.request("GET \(path) HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port) }
            #expect(try await get("/v2/team/app/manifests/v1").status == 200)  // first sight of a reachable upstream: no event
            let port = upstream.registry.port
            try await upstream.registry.stop()
            // Not cached: Wharf must ask, and gets no answer. (The first attempt may go out on a pooled
            // connection the stopping registry just closed: a per-request failure, not yet "down".)
            for _ in 0..<5 where wharf.mirror.upstream.health.reachable != false {
                #expect(try await get("/v2/team/app/manifests/v2").status != 200)
            }
            let down = try await inbox.wait { $0.contains { $0.event == "upstream.down" } }
            #expect(down.filter { $0.event == "upstream.down" }.count == 1)

            try await upstream.registry.start(port: port)
            #expect(upstream.registry.url.hasSuffix(":\(port)"))
            var status = 0
            for _ in 0..<75 where status != 200 {  // a circuit opened by the failures lets a trial through within 10 s
                status = try await get("/v2/team/app/manifests/v2").status
                if status != 200 { try await Task.sleep(for: .milliseconds(200)) }
            }
            #expect(status == 200, "the upstream is back, the tag must resolve")
            let all = try await inbox.wait { $0.contains { $0.event == "upstream.up" } }
            #expect(all.map(\.event).filter { $0.hasPrefix("upstream.") } == ["upstream.down", "upstream.up"])
            let up = try #require(all.first { $0.event == "upstream.up" })
            #expect(up.body["upstream"] == "hub" && up.body["event"] == "upstream.up" && up.body["time"] != nil)
            #expect(all.allSatisfy { $0.signatureValid }, "unsigned or badly signed deliveries")
            #expect(Notifier.eventNames == WebhookConfiguration.eventNames, "the configuration accepts exactly the events Wharf emits")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
        await inbox.stop()
    }

    @Test("`webhooks:` in the config file of `wharf serve`: each receiver gets only its events, signed with its own secret")
    func webhooksFromConfigFile() async throws {
        let secrets = ["/all": Array("secret-of-the-all-hook".utf8), "/tags": Array("secret-of-the-tags-hook".utf8)]
        let inbox = WebhookInbox(secrets: secrets)
        try await inbox.start()
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [300_000, 20_000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try await upstream.start()
        let work = try TempDirectory.make("hooks-config")
        var wharf: WharfProcess?
        do {
            try "secret-of-the-all-hook\n".write(toFile: work + "/all.secret", atomically: true, encoding: .utf8)
            try "secret-of-the-tags-hook".write(toFile: work + "/tags.secret", atomically: true, encoding: .utf8)
            try """
                webhooks:
                  - url: \(inbox.url("/all"))
                    secret-file: \(work)/all.secret
                  - url: \(inbox.url("/tags"))
                    secret-file: \(work)/tags.secret
                    events: [tag.pulled]
                  - url: \(inbox.url("/unsigned"))
                    events: [blob.filled]
                """.write(toFile: work + "/wharf.yaml", atomically: true, encoding: .utf8)
            let started = try await WharfProcess.start(
                upstream: upstream.registry.url, dataDirectory: work + "/data", extraArguments: ["--config", work + "/wharf.yaml"])
            wharf = started
            let get = { (path: String) in
                try await RawHTTP.request(
                    "GET \(path) HTTP/1.1\r\nHost: w\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n",
                    port: started.port)
            }
            #expect(try await get("/v2/team/app/manifests/v1").status == 200)
            for blob in image.blobs { #expect(try await get("/v2/team/app/blobs/\(blob.digest)").status == 200) }
            let digests = Set(image.blobs.map(\.digest))
            // Events go to the receivers in order, so once /unsigned has every blob.filled, /tags has had its chance.
            let all = try await inbox.wait { d in
                Set(d.filter { $0.path == "/unsigned" }.compactMap { $0.body["digest"] }) == digests && d.contains { $0.path == "/tags" }
            }
            let byPath = Dictionary(grouping: all, by: \.path)
            let everything = byPath["/all"] ?? []
            #expect(Set(everything.filter { $0.event == "blob.filled" }.compactMap { $0.body["digest"] }) == digests)
            #expect(everything.contains { $0.event == "tag.pulled" && $0.body["tag"] == "v1" && $0.body["digest"] == image.manifest.digest })
            #expect(!(byPath["/tags"] ?? []).isEmpty && (byPath["/tags"] ?? []).allSatisfy { $0.event == "tag.pulled" })
            #expect((byPath["/unsigned"] ?? []).allSatisfy { $0.event == "blob.filled" })
            #expect(all.allSatisfy { $0.signatureValid }, "each receiver's bodies are signed with its own secret, /unsigned's not at all")
        } catch {
            Issue.record(error)
        }
        if let wharf { await wharf.stop() }
        await upstream.stop()
        await inbox.stop()
        try? FileManager.default.removeItem(atPath: work)
    }
}
