import Testing
@testable import WharfUpstream

/// When a request goes on from the upstream to its fallbacks, and which fallback answers count.
@Suite(.tags(.unit)) struct FailoverPolicyTests {
    typealias P = FailoverPolicy
    static let digest = "sha256:" + String(repeating: "ab", count: 32)

    @Test("blobs and manifests by digest are addressed by digest; manifests by tag, by tag")
    func addressing() {
        #expect(P.Addressing(path: "blobs/\(Self.digest)") == .byDigest)
        #expect(P.Addressing(path: "manifests/\(Self.digest)") == .byDigest)
        #expect(P.Addressing(path: "manifests/v1.2") == .byTag)
        #expect(P.Addressing(path: "manifests/sha256-\(String(repeating: "ab", count: 32))") == .byTag, "a referrers fallback tag is a tag")
        #expect(P.Addressing(path: "manifests/sha256:abc") == .byTag, "not a valid digest")
    }

    @Test("the upstream's answers below 500 other than 429 are final, 404 and 401 included")
    func primaryAnswersAreFinal() {
        for status in [200, 206, 301, 304, 400, 401, 403, 404, 405, 499] {
            for addressing in [P.Addressing.byTag, .byDigest] {
                #expect(P.afterPrimary(.answered(status: status), addressing: addressing, identity: .mirror) == .accept, "\(status) \(addressing)")
            }
        }
    }

    @Test("content by digest goes on to the fallbacks on 5xx, 429, unreachable, circuit open and a rate-limit hold")
    func digestFailsOver() {
        let outcomes: [P.Outcome] = [
            .answered(status: 500), .answered(status: 502), .answered(status: 503), .answered(status: 429),
            .unreachable("connection refused"), .unreachable("no answer within the first-byte timeout"),
            P.Outcome(error: UpstreamCircuitOpen(upstream: "hub")), P.Outcome(error: UpstreamBackoff(retryAfter: .seconds(5))),
        ]
        for outcome in outcomes {
            #expect(P.afterPrimary(outcome, addressing: .byDigest, identity: .mirror) == .next, "\(outcome)")
        }
    }

    @Test("a tag goes on to the fallbacks only when the upstream is unreachable")
    func tagFailsOverOnlyWhenUnreachable() {
        #expect(P.afterPrimary(.unreachable("refused"), addressing: .byTag, identity: .mirror) == .next)
        #expect(P.afterPrimary(P.Outcome(error: UpstreamCircuitOpen(upstream: "hub")), addressing: .byTag, identity: .mirror) == .next)
        #expect(P.afterPrimary(P.Outcome(error: UpstreamUnreachable(description: "timeout")), addressing: .byTag, identity: .mirror) == .next)
        // The upstream is up and said no (or Wharf holds it back): its tags are not taken from a mirror.
        for outcome: P.Outcome in [.answered(status: 500), .answered(status: 503), .answered(status: 429), .heldBack("hold")] {
            #expect(P.afterPrimary(outcome, addressing: .byTag, identity: .mirror) == .stop, "\(outcome)")
        }
    }

    @Test("failures that say nothing about availability, and pass-through identities, never fail over")
    func neverFailOver() {
        for error: any Error in [CancellationError(), UpstreamCredentialsRejected(), UpstreamRedirectRefused(reason: "private address")] {
            let outcome = P.Outcome(error: error)
            #expect(P.afterPrimary(outcome, addressing: .byDigest, identity: .mirror) == .stop, "\(error)")
        }
        let client = UpstreamIdentity.client(UpstreamCredentials(username: "alice", password: "x"))
        for identity in [client, .client(nil)] {
            #expect(P.afterPrimary(.unreachable("refused"), addressing: .byDigest, identity: identity) == .stop)
            #expect(P.afterPrimary(.answered(status: 503), addressing: .byDigest, identity: identity) == .stop)
            #expect(P.afterPrimary(.answered(status: 200), addressing: .byDigest, identity: identity) == .accept)
        }
    }

    @Test("a fallback's success is used; its 404, 401, 5xx, 429 or failure moves on; cancellation stops")
    func fallbackAnswers() {
        #expect(P.afterFallback(.answered(status: 200)) == .accept)
        #expect(P.afterFallback(.answered(status: 206)) == .accept)
        for status in [304, 401, 403, 404, 429, 500, 503] {
            #expect(P.afterFallback(.answered(status: status)) == .next, "\(status)")
        }
        #expect(P.afterFallback(.unreachable("refused")) == .next)
        #expect(P.afterFallback(.heldBack("hold")) == .next)
        #expect(P.afterFallback(P.Outcome(error: UpstreamCredentialsRejected())) == .next)
        #expect(P.afterFallback(P.Outcome(error: CancellationError())) == .stop)
    }

    @Test("a fallback's configuration is its own URL, credentials and realms, and the upstream's everything else")
    func fallbackConfiguration() throws {
        var primary = try UpstreamConfiguration(
            name: "hub", url: "https://registry-1.docker.io", credentials: UpstreamCredentials(username: "u", password: "p"), tagTTL: .seconds(60),
            allowPrivateRedirects: true, bodyTimeout: .seconds(20))
        primary.firstByteTimeout = .seconds(2)
        primary.connectTimeout = .seconds(3)
        primary.idleTimeout = .seconds(4)
        primary.staleWhileRevalidate = .seconds(600)
        primary.rateLimitReservePercent = 25
        let fallback = try primary.fallback(UpstreamFallback(url: "https://mirror.gcr.io/", tokenRealms: ["https://auth.gcr.io"]))
        #expect(fallback.url == "https://mirror.gcr.io" && fallback.name == "mirror.gcr.io" && fallback.credentials == nil)
        #expect(fallback.tokenRealms == ["https://auth.gcr.io"] && !fallback.isDockerHub)
        #expect(fallback.tagTTL == .seconds(60) && fallback.bodyTimeout == .seconds(20) && fallback.allowPrivateRedirects)
        #expect(fallback.firstByteTimeout == .seconds(2) && fallback.connectTimeout == .seconds(3) && fallback.idleTimeout == .seconds(4))
        #expect(fallback.staleWhileRevalidate == .seconds(600) && fallback.rateLimitReservePercent == 25)
        #expect(try primary.fallback(UpstreamFallback(url: "http://127.0.0.1:5001")).name == "127.0.0.1:5001")
        #expect(throws: ConfigurationError.self) { try primary.fallback(UpstreamFallback(url: "ftp://mirror.example")) }
    }
}
