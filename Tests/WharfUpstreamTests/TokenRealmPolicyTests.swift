import Testing
@testable import WharfUpstream

/// Where credentials may go: the upstream's own origin, listed realms, Docker Hub's auth for Docker Hub.
@Suite(.tags(.unit)) struct TokenRealmPolicyTests {
    static func policy(_ url: String, realms: [String] = []) throws -> TokenRealmPolicy {
        TokenRealmPolicy(configuration: try UpstreamConfiguration(url: url, tokenRealms: realms))
    }

    @Test("same scheme, host and port only")
    func sameOrigin() throws {
        let p = try Self.policy("http://127.0.0.1:5000")
        #expect(p.mayReceiveCredentials("http://127.0.0.1:5000/token"))
        #expect(!p.mayReceiveCredentials("http://127.0.0.1:5001/token"), "another port of the same host")
        #expect(!p.mayReceiveCredentials("https://127.0.0.1:5000/token"), "another scheme")
        let https = try Self.policy("https://registry.example.com")
        #expect(https.mayReceiveCredentials("https://registry.example.com:443/token"))
        #expect(!https.mayReceiveCredentials("http://registry.example.com/token"))
        #expect(!https.mayReceiveCredentials("https://auth.example.com/token"), "no registrable-domain guess")
    }

    @Test("no last-two-labels rule: another *.co.uk is not trusted")
    func publicSuffix() throws {
        let p = try Self.policy("https://registry.example.co.uk")
        #expect(!p.mayReceiveCredentials("https://evil.co.uk/token"))
        #expect(!p.mayReceiveCredentials("https://auth.other.co.uk/token"))
    }

    @Test("listed realms and Docker Hub's own")
    func listed() throws {
        let p = try Self.policy("http://127.0.0.1:5000", realms: ["http://127.0.0.1:5001/token"])
        #expect(p.mayReceiveCredentials("http://127.0.0.1:5001/anything"))
        #expect(!p.mayReceiveCredentials("http://127.0.0.1:5002/token"))
        let hub = try Self.policy("https://registry-1.docker.io")
        #expect(hub.mayReceiveCredentials("https://auth.docker.io/token"))
        #expect(!hub.mayReceiveCredentials("http://auth.docker.io/token"))
        #expect(!hub.mayReceiveCredentials("https://evil.docker.io.example/token"))
        #expect(!(try Self.policy("https://ghcr.io")).mayReceiveCredentials("https://auth.docker.io/token"))
        #expect(throws: ConfigurationError.self) { try UpstreamConfiguration(url: "https://r.example", tokenRealms: ["unix:///x"]) }
    }
}
