import Foundation
import Testing
import WharfClock
import WharfTestSupport

/// Upstream tokens that run out: Wharf refreshes them before they expire by its clock, and a token
/// the upstream rejects early (a rotated key, a revoked token) is replaced once and the request retried.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration, .realClients))
struct TokenExpiryTests {
    struct Outcome {
        let tokenRequestsBefore: Int
        let tokenRequestsAfter: Int
        /// Upstream 401s on content paths (not the `/v2/` probe).
        let rejected: Int
    }

    /// Pulls one image, lets `between` happen, pulls a second one from the same repository; both must
    /// succeed with exact bytes. Tokens are advertised and signed for 300 s.
    func pullAcross(between: @escaping (WharfFixture, ManualClock) -> Void) async throws -> Outcome? {
        let clock = ManualClock()
        var first: GeneratedImage!, second: GeneratedImage!
        var outcome: Outcome?
        try await withWharf(tokenLifetime: 300, clock: clock.clock, seed: { upstream in
            first = try upstream.generator.image(layerSizes: [200_000], format: .oci)
            second = try upstream.generator.image(layerSizes: [300_000], format: .oci)
            try upstream.storage.add(image: first, repository: "team/app", tag: "one")
            try upstream.storage.add(image: second, repository: "team/app", tag: "two")
        }, proxy: true) { f in
            let out = try TempDirectory.make("skopeo-token")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let a = try await Skopeo.copy(source: "docker://\(f.wharf.host)/team/app:one", destinationDirectory: out + "/one", extraArguments: [], timeout: .seconds(60))
            #expect(a.status == 0, "\(a.output)")
            let before = f.upstream.tokens.requestCount
            between(f, clock)
            let b = try await Skopeo.copy(source: "docker://\(f.wharf.host)/team/app:two", destinationDirectory: out + "/two", extraArguments: [], timeout: .seconds(60))
            #expect(b.status == 0, "\(b.output)")
            #expect(try SkopeoDir.verify(directory: out + "/two", expected: second.blobs) == [])
            let rejected = try f.upstream.registry.accessLog().filter { $0.status == 401 && $0.path != "/v2/" }.count
            outcome = Outcome(tokenRequestsBefore: before, tokenRequestsAfter: f.upstream.tokens.requestCount, rejected: rejected)
        }
        return outcome
    }

    @Test("tokens are refreshed before they expire")
    func proactiveRefresh() async throws {
        // 301 s later by Wharf's clock every cached token is past its refresh time (300 s less a
        // 30 s margin); the upstream still accepts them, so only a proactive refresh fetches new ones.
        let o = try await self.pullAcross { _, clock in clock.advance(by: .seconds(301)) }
        #expect(o != nil)
        #expect((o?.tokenRequestsAfter ?? 0) > (o?.tokenRequestsBefore ?? 0), "Wharf did not fetch a fresh token after expiry")
        #expect(o?.rejected == 0, "the upstream rejected a request: a stale token was sent")
    }

    @Test("a token the upstream rejects early is refreshed once and the request retried")
    func rejectedTokenIsRefreshed() async throws {
        // Wharf's clock stands still: its tokens are fresh for it, but the upstream no longer takes them.
        let o = try await self.pullAcross { f, _ in f.proxy?.revokeCredentialsSeen() }
        #expect(o != nil)
        #expect((o?.rejected ?? 0) > 0, "the stale token was never rejected, so the retry path was not exercised")
        #expect((o?.tokenRequestsAfter ?? 0) > (o?.tokenRequestsBefore ?? 0))
    }
}
