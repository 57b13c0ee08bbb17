import Testing
@testable import WharfUpstream

/// Which redirects are followed, with a resolver that answers from a table (no DNS, no sockets).
@Suite(.tags(.unit)) struct RedirectPolicyTests {
    struct TableResolver: HostResolver {
        let table: [String: [String]]
        func addresses(of host: String) async throws -> [IPAddress] {
            if let literal = IPAddress(host) { return [literal] }
            guard let list = self.table[host] else { throw UpstreamUnreachable(description: "no such host \(host)") }
            return list.compactMap(IPAddress.init)
        }
    }

    static let resolver = TableResolver(table: [
        "registry.example": ["203.0.113.10"],
        "cdn.example": ["198.51.100.7", "2001:db8::7"],
        "rebind.example": ["127.0.0.1"],
        "internal.lan": ["10.1.2.3"],
        "localhost": ["127.0.0.1", "::1"],
    ])

    static func policy(_ upstreamHost: String, allowPrivate: Bool = false) -> RedirectPolicy {
        RedirectPolicy(upstreamHost: upstreamHost, allowPrivate: allowPrivate, resolver: Self.resolver)
    }

    static func refused(_ policy: RedirectPolicy, _ location: String, from: String = "https://registry.example/v2/r/blobs/x", hop: Int = 0) async -> String? {
        do {
            _ = try await policy.next(location: location, from: from, hop: hop)
            return nil
        } catch let e as UpstreamRedirectRefused {
            return e.reason
        } catch {
            return "\(error)"
        }
    }

    @Test("only http and https")
    func schemes() async {
        let p = Self.policy("registry.example")
        for location in ["http+unix://%2Fvar%2Frun%2Fdocker.sock/v2/", "https+unix://%2Ftmp%2Fx/", "file:///etc/passwd", "ftp://cdn.example/x", "gopher://x/"] {
            #expect(await Self.refused(p, location) != nil, "\(location) was allowed")
        }
        #expect(await Self.refused(p, "https://cdn.example/blob?sig=1") == nil)
        #expect(await Self.refused(p, "/v2/r/blobs/y") == nil, "a relative Location stays on the upstream")
    }

    @Test("a public upstream may not send Wharf to loopback, private or link-local addresses, by name or number")
    func publicUpstream() async {
        let p = Self.policy("registry.example")
        for location in [
            "http://127.0.0.1:5000/x", "http://[::1]/x", "http://localhost/x", "http://rebind.example/x", "http://10.0.0.1/x",
            "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/x", "http://0.0.0.0:80/x", "http://[::ffff:127.0.0.1]/x",
            "http://internal.lan/x", "http://192.168.1.1/x", "http://172.20.0.1/x",
        ] {
            #expect(await Self.refused(p, location) != nil, "\(location) was allowed")
        }
        #expect(await Self.refused(Self.policy("registry.example", allowPrivate: true), "http://10.0.0.1/x") == nil, "the switch allows it")
    }

    @Test("a loopback upstream may redirect to loopback, a private one to private, but not across classes")
    func sameClass() async {
        #expect(await Self.refused(Self.policy("127.0.0.1"), "http://127.0.0.1:9999/cdn", from: "http://127.0.0.1:5000/v2/") == nil)
        #expect(await Self.refused(Self.policy("localhost"), "http://127.0.0.1:9999/cdn", from: "http://localhost:5000/v2/") == nil)
        #expect(await Self.refused(Self.policy("internal.lan"), "http://10.9.9.9/cdn", from: "http://internal.lan/v2/") == nil)
        #expect(await Self.refused(Self.policy("internal.lan"), "http://127.0.0.1/cdn", from: "http://internal.lan/v2/") != nil)
        #expect(await Self.refused(Self.policy("127.0.0.1"), "http://169.254.169.254/", from: "http://127.0.0.1:5000/v2/") != nil)
        #expect(await Self.refused(Self.policy("127.0.0.1"), "https://cdn.example/x", from: "http://127.0.0.1:5000/v2/") == nil, "public is fine")
    }

    @Test("a name that does not resolve is refused; the hop limit holds")
    func unresolvedAndHops() async {
        let p = Self.policy("registry.example")
        #expect(await Self.refused(p, "https://nowhere.example/x") != nil)
        #expect(await Self.refused(p, "https://cdn.example/x", hop: RedirectPolicy.maxRedirects - 1) == nil)
        #expect(await Self.refused(p, "https://cdn.example/x", hop: RedirectPolicy.maxRedirects) != nil)
    }
}
