import Foundation
import Testing
import WharfAuth
import WharfTestSupport

/// Issue #12: private repository names must not leak through `/stats` and `/` in htpasswd and
/// pass-through modes; only `client-auth.admins` see them, and the probes stay open.
@Suite(.serialized, .timeLimit(.minutes(10)), .tags(.integration))
struct StatusPrivacyTests {
    static func get(_ path: String, _ port: Int, auth: String? = nil) async throws -> RawHTTP.Response {
        try await ClientAuthTests.get(path, port, auth: auth)
    }

    /// Whether an answer names the private repository (JSON escapes its slash).
    static func namesSecret(_ r: RawHTTP.Response) -> Bool {
        r.bodyText.contains("private/secret") || r.bodyText.contains(#"private\/secret"#)
    }

    @Test("htpasswd and pass-through: after a private pull, /stats and / name repositories to admins only; /healthz, /readyz, /metrics stay open")
    func namesOnlyForAdmins() async throws {
        let f = try await ClientAuthTests.Fixture.start()
        let dir = try TempDirectory.make("htpasswd-admins")
        let file = dir + "/htpasswd"
        let entries = [("carol", "carol-pw"), ("erin", "erin-pw")].map { HtpasswdFile.entry(user: $0.0, password: $0.1, cost: 4) }
        try (entries.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let htpasswdMode = try await WharfInstance.start(upstreams: [try f.mirrorUpstream(credentials: ClientAuthTests.alice)], auth: { logger in
            ClientAuthenticator(
                mode: .htpasswd, htpasswd: try HtpasswdFile(path: file, logger: logger), allowWithoutTLS: true, admins: ["carol"], logger: logger)
        })
        let passthroughMode = try await WharfInstance.start(upstreams: [try f.mirrorUpstream(credentials: nil)], auth: { logger in
            ClientAuthenticator(
                mode: .passthrough, htpasswd: try HtpasswdFile(path: file, logger: logger), allowWithoutTLS: true, admins: ["carol"], logger: logger)
        })
        let admin = ClientAuthTests.basic("carol", "carol-pw"), user = ClientAuthTests.basic("erin", "erin-pw")
        do {
            for (mode, wharf, puller) in [("htpasswd", htpasswdMode, admin), ("passthrough", passthroughMode, ClientAuthTests.basic("alice", "alice-secret"))] {
                let manifest = try await Self.get("/v2/private/secret/manifests/v1", wharf.port, auth: puller)
                #expect(manifest.status == 200, "\(mode): \(manifest.status)")
                let layer = try await Self.get("/v2/private/secret/blobs/\(f.secret.layers[0].digest)", wharf.port, auth: puller)
                #expect(layer.status == 200, "\(mode): \(layer.status)")

                // Anonymous, and an authenticated user who is not an admin: numbers, no names.
                for (who, auth) in [("anonymous", nil), ("erin", user)] as [(String, String?)] {
                    let stats = try await Self.get("/stats", wharf.port, auth: auth)
                    #expect(stats.status == 200, "\(mode) \(who): \(stats.status)")
                    #expect(!Self.namesSecret(stats), "\(mode) \(who): /stats names the private repository")
                    let json = try JSONSerialization.jsonObject(with: Data(stats.body)) as? [String: Any] ?? [:]
                    #expect(json["repositoryNamesShown"] as? Bool == false && (json["topRepositoriesByBytes"] as? [Any])?.isEmpty == true)
                    #expect((json["cache"] as? [String: Any])?["manifestMisses"] as? Int == 1, "\(mode) \(who): the aggregate numbers are there")
                    let page = try await Self.get("/", wharf.port, auth: auth)
                    #expect(page.status == 200 && !Self.namesSecret(page), "\(mode) \(who): the dashboard names it")
                    #expect(page.bodyText.contains("/?signin"))
                    for path in ["/ui/cache", "/ui/cache?q=private", "/ui/cache/image?upstream=test-upstream&repository=private/secret&reference=v1"] {
                        let browser = try await Self.get(path, wharf.port, auth: auth)
                        #expect(browser.status == 200 && !Self.namesSecret(browser) && browser.bodyText.contains("signin"), "\(mode) \(who): \(path) names it")
                    }
                }

                // The admin sees them.
                let stats = try await Self.get("/stats", wharf.port, auth: admin)
                #expect(stats.status == 200 && Self.namesSecret(stats), "\(mode) admin: \(stats.status)")
                let page = try await Self.get("/", wharf.port, auth: admin)
                #expect(page.status == 200 && Self.namesSecret(page), "\(mode) admin dashboard: \(page.status)")
                let browser = try await Self.get("/ui/cache", wharf.port, auth: admin)
                #expect(browser.status == 200 && Self.namesSecret(browser), "\(mode) admin cache browser: \(browser.status)")

                // Wrong credentials are refused like on the registry API; ?signin asks a browser for them.
                let wrong = try await Self.get("/stats", wharf.port, auth: ClientAuthTests.basic("carol", "nope"))
                #expect(wrong.status == 401 && wrong.header("www-authenticate") == "Basic realm=\"wharf\"", "\(mode): \(wrong.status)")
                let signin = try await Self.get("/?signin", wharf.port)
                #expect(signin.status == 401 && signin.header("www-authenticate") == "Basic realm=\"wharf\"", "\(mode) signin: \(signin.status)")
                #expect(try await Self.get("/?signin", wharf.port, auth: admin).status == 200)

                // Probes and the aggregate metrics stay open, and /metrics has no repository label.
                #expect(try await Self.get("/healthz", wharf.port).status == 200)
                #expect(try await Self.get("/readyz", wharf.port).status == 200)
                let metrics = try await Self.get("/metrics", wharf.port)
                #expect(metrics.status == 200 && metrics.bodyText.contains("wharf_requests_total"), "\(mode): \(metrics.status)")
                #expect(!Self.namesSecret(metrics))
            }
        } catch {
            Issue.record(error)
        }
        await htpasswdMode.stop()
        await passthroughMode.stop()
        await f.upstream.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }
}
