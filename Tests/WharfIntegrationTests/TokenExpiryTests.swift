import NIOCore
import NIOHTTP1
import OCIDistribution
import Synchronization
import WharfMirror
import WharfStorage
import WharfUpstream
import AsyncHTTPClient
import Foundation
import Testing
import WharfTestSupport

/// Upstream tokens that live 5 s: Wharf refreshes them and pulls spanning longer still succeed.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct TokenExpiryTests {
    @Test("pulls keep working past the token lifetime")
    func shortLivedTokens() async throws {
        let upstream = try UpstreamEnvironment(tokenLifetime: 5)
        let first = try upstream.generator.image(layerSizes: [200_000], format: .oci)
        let second = try upstream.generator.image(layerSizes: [300_000], format: .oci)
        try upstream.storage.add(image: first, repository: "team/app", tag: "one")
        try upstream.storage.add(image: second, repository: "team/app", tag: "two")
        // Distribution accepts tokens up to 60 s past `exp`; shift the claim so a token really dies after 5 s.
        upstream.tokens.setExpiryClaimOffset(-60)
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            let out = try TempDirectory.make("skopeo-token")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let a = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app:one", destinationDirectory: out + "/one", extraArguments: [], timeout: .seconds(60))
            #expect(a.status == 0, "\(a.output)")
            let tokensAfterFirst = upstream.tokens.requestCount
            try await Task.sleep(for: .seconds(7))
            let b = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app:two", destinationDirectory: out + "/two", extraArguments: [], timeout: .seconds(60))
            #expect(b.status == 0, "\(b.output)")
            #expect(try SkopeoDir.verify(directory: out + "/two", expected: second.blobs) == [])
            #expect(upstream.tokens.requestCount > tokensAfterFirst, "Wharf did not fetch a fresh token after expiry")
            // Nothing was rejected with a stale token: every upstream 401 was only the initial challenge probe.
            let rejected = try upstream.registry.accessLog().filter { $0.status == 401 && $0.path != "/v2/" }
            #expect(rejected.isEmpty, "upstream rejected requests: \(rejected)")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }

    @Test("a token the upstream rejects early is refreshed once and the request retried")
    func rejectedTokenIsRefreshed() async throws {
        let upstream = try UpstreamEnvironment(tokenLifetime: 300)
        let first = try upstream.generator.image(layerSizes: [100_000], format: .oci)
        let second = try upstream.generator.image(layerSizes: [100_000], format: .oci)
        try upstream.storage.add(image: first, repository: "team/app", tag: "one")
        try upstream.storage.add(image: second, repository: "team/app", tag: "two")
        // Wharf is told 300 s, but the signed claim (plus Distribution's 60 s leeway) lets a token live 5 s.
        upstream.tokens.setExpiryClaimOffset(-355)
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        do {
            let out = try TempDirectory.make("skopeo-token2")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let a = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app:one", destinationDirectory: out + "/one", extraArguments: [], timeout: .seconds(60))
            #expect(a.status == 0, "\(a.output)")
            try await Task.sleep(for: .seconds(7))
            let b = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app:two", destinationDirectory: out + "/two", extraArguments: [], timeout: .seconds(60))
            #expect(b.status == 0, "\(b.output)")
            #expect(try SkopeoDir.verify(directory: out + "/two", expected: second.blobs) == [])
            let rejected = try upstream.registry.accessLog().filter { $0.status == 401 && $0.path != "/v2/" }
            #expect(!rejected.isEmpty, "the stale token was never rejected, so the retry path was not exercised")
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
    }
}
