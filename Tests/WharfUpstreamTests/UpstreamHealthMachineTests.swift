import Testing
import OCIDistribution
@testable import WharfUpstream

/// The upstream's health as one value: breakers per kind, holds, reachability — driven by events with
/// injected instants, no sockets.
@Suite(.tags(.unit)) struct UpstreamHealthMachineTests {
    let t0 = ContinuousClock.now

    static func manifest(_ repository: String, _ reference: String) -> UpstreamRequestKey {
        UpstreamRequestKey(kind: .manifest, repository: repository, reference: reference)
    }

    @Test("the breaker-abuse sequence: any number of 500s for one manifest key opens nothing; other tags still go")
    func layerDigestAsManifest() {
        var m = UpstreamHealthMachine()
        let poison = Self.manifest("library/alpine", "sha256:" + String(repeating: "a", count: 64))
        for i in 0..<100 {
            #expect(m.admit(poison, now: t0 + .milliseconds(i)) == .proceed(trial: nil))
            #expect(m.record(.serverError(status: 500), for: poison, trial: nil, now: t0 + .milliseconds(i), wallClock: 1) == .none)
        }
        #expect(m.admit(Self.manifest("library/alpine", "3.20"), now: t0 + .seconds(1)) == .proceed(trial: nil))
        let h = m.health(now: t0)
        #expect(h.circuit == .closed)
        #expect(h.reachable == nil, "a 5xx for one request says nothing about reachability")
        #expect(h.lastError == "HTTP 500")
    }

    @Test("500s on distinct keys ask for a probe; a healthy probe keeps every kind closed")
    func distinctKeysThenHealthyProbe() {
        var m = UpstreamHealthMachine()
        var decisions: [UpstreamHealthMachine.Decision] = []
        for i in 0..<3 {
            decisions.append(m.record(.serverError(status: 500), for: Self.manifest("r", "sha256:\(i)"), trial: nil, now: t0, wallClock: 1))
        }
        #expect(decisions.map(\.probe) == [nil, nil, .manifest])
        #expect(m.probeFinished(.manifest, verdict: .healthy, reason: nil, now: t0, wallClock: 2) == .none)
        #expect(m.health(now: t0).circuit == .closed)
        for i in 3..<40 {
            #expect(m.record(.serverError(status: 500), for: Self.manifest("r", "sha256:\(i)"), trial: nil, now: t0 + .seconds(1), wallClock: 3).probe == nil)
        }
    }

    @Test("connection failures open the breaker of their kind only, mark the upstream down and back up")
    func perKindAndReachability() {
        var m = UpstreamHealthMachine()
        let first = m.record(.answered, for: Self.manifest("r", "v1"), trial: nil, now: t0, wallClock: 1)
        #expect(first.reachabilityChanged == nil, "first sight of a reachable upstream is no change")
        let blob = UpstreamRequestKey(kind: .blob, repository: "r", reference: "sha256:x")
        let down = m.record(.connectFailed("refused"), for: blob, trial: nil, now: t0, wallClock: 2)
        #expect(down.reachabilityChanged == .init(reachable: false, reason: "refused"))
        _ = m.record(.connectFailed("refused"), for: blob, trial: nil, now: t0, wallClock: 2)
        _ = m.record(.connectFailed("refused"), for: blob, trial: nil, now: t0, wallClock: 2)
        #expect(m.admit(blob, now: t0 + .seconds(1)) == .circuitOpen)
        #expect(m.admit(Self.manifest("r", "v2"), now: t0 + .seconds(1)) == .proceed(trial: nil), "manifests have their own breaker")
        let h = m.health(now: t0)
        #expect(h.circuit == .open && h.circuits?["blob"] == .open && h.circuits?["manifest"] == .closed)
        let back = m.record(.answered, for: Self.manifest("r", "v2"), trial: nil, now: t0 + .seconds(1), wallClock: 3)
        #expect(back.reachabilityChanged == .init(reachable: true, reason: nil))
    }

    @Test("a failed probe opens the breaker and marks the upstream down")
    func failedProbe() {
        var m = UpstreamHealthMachine()
        for i in 0..<3 { _ = m.record(.transportFailed("timeout"), for: Self.manifest("r", "t\(i)"), trial: nil, now: t0, wallClock: 1) }
        let d = m.probeFinished(.manifest, verdict: .unhealthy, reason: "probe answered 503", now: t0, wallClock: 2)
        #expect(d.reachabilityChanged?.reachable == false)
        #expect(m.admit(Self.manifest("r", "other"), now: t0 + .seconds(1)) == .circuitOpen)
    }

    @Test("a pool wait is not an upstream failure")
    func poolWaitIsNeutral() {
        var m = UpstreamHealthMachine()
        let blob = UpstreamRequestKey(kind: .blob, repository: "r", reference: "sha256:x")
        for _ in 0..<100 { #expect(m.record(.notSent, for: blob, trial: nil, now: t0, wallClock: 1) == .none) }
        #expect(m.admit(blob, now: t0) == .proceed(trial: nil))
        #expect(m.health(now: t0).reachable == nil && m.health(now: t0).lastError == nil)
    }

    @Test("a 429 on one repository's blob holds that repository's manifests only, for at most 5 minutes")
    func scopedHold() {
        var m = UpstreamHealthMachine()
        let blob = UpstreamRequestKey(kind: .blob, repository: "a", reference: "sha256:x")
        _ = m.record(.rateLimited(retryAfter: .seconds(3600), quotaExhausted: false), for: blob, trial: nil, now: t0, wallClock: 1)
        #expect(m.admit(Self.manifest("a", "v1"), now: t0 + .seconds(1)) == .held(.seconds(299)))
        #expect(m.admit(Self.manifest("b", "v1"), now: t0 + .seconds(1)) == .proceed(trial: nil))
        #expect(m.admit(blob, now: t0 + .seconds(1)) == .proceed(trial: nil), "holds apply to manifests")
        #expect(m.admit(Self.manifest("a", "v1"), now: t0 + .seconds(300)) == .proceed(trial: nil))
        #expect(m.health(now: t0 + .seconds(1)).rateLimitHold == "repositories")
    }

    @Test("Docker Hub's RateLimit-Remaining: 0 holds the whole upstream")
    func quotaHold() {
        var m = UpstreamHealthMachine()
        _ = m.record(.rateLimited(retryAfter: .seconds(60), quotaExhausted: true), for: Self.manifest("a", "v1"), trial: nil, now: t0, wallClock: 1)
        #expect(m.admit(Self.manifest("b", "v1"), now: t0 + .seconds(1)) == .held(.seconds(59)))
        #expect(m.health(now: t0).rateLimitHold == "upstream")
    }

    @Test("a trial that ended without an outcome is given back")
    func finishedReleasesTrial() {
        var m = UpstreamHealthMachine(threshold: 1, cooldown: .seconds(10))
        let key = Self.manifest("r", "v1")
        _ = m.record(.connectFailed("refused"), for: key, trial: nil, now: t0, wallClock: 1)
        guard case .proceed(let trial?) = m.admit(key, now: t0 + .seconds(10)) else { Issue.record("no trial"); return }
        #expect(m.admit(key, now: t0 + .seconds(10)) == .circuitOpen)
        m.finished(.manifest, trial: trial)
        #expect(m.admit(key, now: t0 + .seconds(10)) != .circuitOpen)
    }
}

@Suite(.tags(.unit)) struct UpstreamChallengeStateTests {
    let t0 = ContinuousClock.now
    @Test("the auth challenge lives in the health machine: none at first, the latest one learned wins")
    func challengeIsPartOfTheMachine() throws {
        var m = UpstreamHealthMachine()
        #expect(m.challenge == nil)
        let first = try #require(AuthChallenge.parse(headers: [#"Bearer realm="https://auth.example/token",service="registry.example""#]).first)
        m.challengeLearned(first)
        #expect(m.challenge?.realm == "https://auth.example/token" && m.challenge?.service == "registry.example")
        let basic = try #require(AuthChallenge.parse(headers: [#"Basic realm="registry""#]).first)
        m.challengeLearned(basic)
        #expect(m.challenge?.scheme == "basic")
    }

    /// Found by the upstream fuzz: one 401 naming a dead realm (or `realm=`) made every later request wait
    /// for a token that could never come, long after the upstream answered anonymously again.
    @Test("a failed token fetch forgets the challenge, at most once per cooldown, so /v2/ is asked again")
    func tokenFailureForgetsChallenge() throws {
        var m = UpstreamHealthMachine(threshold: 3, cooldown: .seconds(10))
        let nothing = m.tokenFetchFailed(now: t0)
        #expect(!nothing, "nothing to forget")
        let bogus = try #require(AuthChallenge.parse(headers: [#"Bearer realm="http://127.0.0.1:1/token",service="x""#]).first)
        m.challengeLearned(bogus)
        let first = m.tokenFetchFailed(now: t0)
        #expect(first && m.challenge == nil)
        m.challengeLearned(bogus)
        let soon = m.tokenFetchFailed(now: t0 + .seconds(9))
        #expect(!soon && m.challenge != nil, "a realm that is really down costs one /v2/ per cooldown, not one per request")
        let later = m.tokenFetchFailed(now: t0 + .seconds(10))
        #expect(later && m.challenge == nil)
    }

    @Test("only a Bearer challenge with an http(s) realm and a host, or a Basic one, is learned")
    func usableChallenges() {
        func realm(_ value: String) -> String? { UpstreamClient.usableChallenge([value])?.realm }
        #expect(realm(#"Bearer realm="https://auth.example/token",service="r""#) == "https://auth.example/token")
        #expect(realm(#"Bearer realm="http://127.0.0.1:5001/token""#) == "http://127.0.0.1:5001/token")
        for bad in [#"Bearer realm="#, #"Bearer realm="""#, #"Bearer realm="file:///etc/passwd""#, #"Bearer realm="/token""#, #"Bearer realm="http://""#, "Bearer"] {
            #expect(UpstreamClient.usableChallenge([bad]) == nil, "\(bad)")
        }
        #expect(UpstreamClient.usableChallenge([#"Basic realm="registry""#])?.scheme == "basic")
    }

    @Test("a token is used only if it can go in a header as it is: 1 to 64 KiB of visible ASCII")
    func usableTokens() {
        #expect(UpstreamClient.isUsableToken("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIifQ.c2ln-_+/="))
        for bad in ["", "a\r\nX-Injected: yes", "a\nb", "a\u{0}b", "a b", "caf\u{E9}", String(repeating: "x", count: (64 << 10) + 1)] {
            #expect(!UpstreamClient.isUsableToken(bad), "\(bad.prefix(20).debugDescription)")
        }
    }
}
