import AsyncHTTPClient
import Logging
import OCIDistribution
import Testing
import WharfMirror
import WharfUpstream

/// Routing by `ns`, by path prefix and to the default upstream, and repository policy.
@Suite(.tags(.unit)) struct RoutingTests {
    static func route(_ url: String, name: String, namespaces: [String] = [], prefix: String? = nil, policy: RepositoryPolicy = .init(), http: UpstreamHTTPClients) throws -> UpstreamRoute {
        let client = UpstreamClient(
            configuration: try UpstreamConfiguration(name: name, url: url), httpClients: http, logger: Logger(label: "t", factory: { _ in SwiftLogNoOpLogHandler() }))
        return UpstreamRoute(client: client, namespaces: namespaces, pathPrefix: prefix, policy: policy)
    }

    @Test func routesByNamespacePrefixAndDefault() async throws {
        let http = UpstreamHTTPClients.make()
        do {
            let hub = try Self.route("https://registry-1.docker.io", name: "hub", prefix: "dockerhub", policy: .init(deny: ["library/forbidden*"]), http: http)
            let ghcr = try Self.route("https://ghcr.io", name: "ghcr", prefix: "ghcr", policy: .init(allow: ["org/**"]), http: http)
            let local = try Self.route("http://127.0.0.1:5001", name: "local", namespaces: ["registry.internal"], http: http)
            let router = UpstreamRouter(routes: [hub, ghcr, local], defaultRoute: hub)

            let a = try router.route(RepositoryName(parsing: "alpine"), namespace: "docker.io")
            #expect(a.client.configuration.name == "hub" && a.repository == "library/alpine" && a.namespace == "docker.io")
            let b = try router.route(RepositoryName(parsing: "org/tool"), namespace: "GHCR.io")
            #expect(b.client.configuration.name == "ghcr" && b.repository == "org/tool" && b.namespace == "ghcr.io")
            let c = try router.route(RepositoryName(parsing: "team/app"), namespace: "127.0.0.1:5001")
            #expect(c.client.configuration.name == "local")
            #expect(try router.route(RepositoryName(parsing: "x/y"), namespace: "registry.internal").client.configuration.name == "local")
            #expect(throws: RegistryError.self) { try router.route(RepositoryName(parsing: "x"), namespace: "quay.io") }

            let d = try router.route(RepositoryName(parsing: "dockerhub/library/redis"), namespace: nil)
            #expect(d.client.configuration.name == "hub" && d.repository == "library/redis" && d.namespace == nil)
            let e = try router.route(RepositoryName(parsing: "ghcr/org/deep/tool"), namespace: nil)
            #expect(e.client.configuration.name == "ghcr" && e.repository == "org/deep/tool")
            let f = try router.route(RepositoryName(parsing: "nginx"), namespace: nil)
            #expect(f.client.configuration.name == "hub" && f.repository == "library/nginx")

            // Policy: deny wins; an allow list admits only its matches.
            do {
                _ = try router.route(RepositoryName(parsing: "forbidden-app"), namespace: nil)
                Issue.record("denied repository was routed")
            } catch {
                #expect(error.code == .denied && error.status == 403)
            }
            #expect(throws: RegistryError.self) { try router.route(RepositoryName(parsing: "ghcr/other/tool"), namespace: nil) }
        } catch {
            Issue.record(error)
        }
        try await http.shutdown()
    }

    @Test(arguments: [
        ("library/*", "library/alpine", true), ("library/*", "library/a/b", false), ("**", "a/b/c", true),
        ("org/**", "org/x/y", true), ("org/**", "other/x", false), ("*/secret*", "team/secret-app", true),
        ("a?c", "abc", true), ("a?c", "a/c", false), ("", "", true), ("x", "", false),
    ])
    func globs(_ pattern: String, _ text: String, _ expected: Bool) {
        #expect(Glob.matches(pattern, text) == expected)
    }
}

@Suite(.tags(.unit)) struct PinParsingTests {
    @Test func parsesReferences() throws {
        let pins = try PinnedImages(["alpine:3.20", "docker.io/library/redis", "team/app@sha256:" + String(repeating: "a", count: 64), "localhost:5000/x/y:v2"], dockerHub: true)
        #expect(pins.references.map(\.repository) == ["library/alpine", "library/redis", "team/app", "x/y"])
        #expect(pins.references.map(\.reference.description) == ["3.20", "latest", "sha256:" + String(repeating: "a", count: 64), "v2"])
        #expect(throws: RegistryError.self) { try PinnedImages(["Bad/Name"], dockerHub: false) }
    }
}
