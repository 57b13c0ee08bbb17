import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import OCIDistribution
import Synchronization
import Testing
import WharfMirror
import WharfStorage
import WharfTestSupport
import WharfUpstream

/// Upstream tokens that live 5 s: Wharf refreshes them and pulls spanning longer still succeed.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration, .realClients))
struct TokenExpiryTests {
    struct Outcome {
        let tokenRequestsBefore: Int
        let tokenRequestsAfter: Int
        /// Upstream 401s on content paths (not the `/v2/` probe).
        let rejected: Int
    }

    /// Pulls one image, waits 7 s, pulls a second one from the same repository; both must succeed.
    /// `claimOffset` shifts the token's signed `exp` (Distribution adds 60 s of leeway to it).
    func pullAcrossExpiry(advertisedLifetime: Int, claimOffset: Int) async throws -> Outcome? {
        let upstream = try UpstreamEnvironment(tokenLifetime: advertisedLifetime)
        let first = try upstream.generator.image(layerSizes: [200_000], format: .oci)
        let second = try upstream.generator.image(layerSizes: [300_000], format: .oci)
        try upstream.storage.add(image: first, repository: "team/app", tag: "one")
        try upstream.storage.add(image: second, repository: "team/app", tag: "two")
        upstream.tokens.setExpiryClaimOffset(claimOffset)
        try await upstream.start()
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url)
        var outcome: Outcome?
        do {
            let out = try TempDirectory.make("skopeo-token")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let a = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app:one", destinationDirectory: out + "/one", extraArguments: [], timeout: .seconds(60))
            #expect(a.status == 0, "\(a.output)")
            let before = upstream.tokens.requestCount
            // Stays a real wait: Distribution checks the token's signed `exp` against its own clock, so the
            // token must really die (the subject of both tests). TokenCache has no injected clock yet.
            try await Task.sleep(for: .seconds(7))
            let b = try await Skopeo.copy(source: "docker://\(wharf.host)/team/app:two", destinationDirectory: out + "/two", extraArguments: [], timeout: .seconds(60))
            #expect(b.status == 0, "\(b.output)")
            #expect(try SkopeoDir.verify(directory: out + "/two", expected: second.blobs) == [])
            let rejected = try upstream.registry.accessLog().filter { $0.status == 401 && $0.path != "/v2/" }.count
            outcome = Outcome(tokenRequestsBefore: before, tokenRequestsAfter: upstream.tokens.requestCount, rejected: rejected)
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
        return outcome
    }

    @Test("tokens are refreshed before they expire")
    func proactiveRefresh() async throws {
        // The signed claim is shifted so a token really dies after 5 s, despite the registry's leeway.
        let o = try await self.pullAcrossExpiry(advertisedLifetime: 5, claimOffset: -60)
        #expect(o != nil)
        #expect((o?.tokenRequestsAfter ?? 0) > (o?.tokenRequestsBefore ?? 0), "Wharf did not fetch a fresh token after expiry")
        #expect(o?.rejected == 0, "the upstream rejected a request: a stale token was sent")
    }

    @Test("a token the upstream rejects early is refreshed once and the request retried")
    func rejectedTokenIsRefreshed() async throws {
        // Wharf is told 300 s, but the signed claim (plus the 60 s leeway) lets a token live 5 s.
        let o = try await self.pullAcrossExpiry(advertisedLifetime: 300, claimOffset: -355)
        #expect(o != nil)
        #expect((o?.rejected ?? 0) > 0, "the stale token was never rejected, so the retry path was not exercised")
        #expect((o?.tokenRequestsAfter ?? 0) > (o?.tokenRequestsBefore ?? 0))
    }
}
