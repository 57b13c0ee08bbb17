import Foundation
import Testing
import WharfTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// SIGHUP re-reads the whole configuration: what can change while serving does, the rest is named
/// in the log as needing a restart, and a file with mistakes changes nothing.
@Suite(.serialized, .timeLimit(.minutes(2)), .tags(.integration))
struct ReloadTests {
    @Test("SIGHUP: a new upstream, path prefix and pin apply at once; new connection limits are logged as needing a restart; a broken file changes nothing")
    func reloadWholeConfiguration() async throws {
        let first = try UpstreamEnvironment(), second = try UpstreamEnvironment()
        let a = try first.generator.image(layerSizes: [30_000], format: .oci)
        let b = try second.generator.image(layerSizes: [40_000], format: .oci)
        try first.storage.add(image: a, repository: "team/a", tag: "v1")
        try second.storage.add(image: b, repository: "team/b", tag: "v1")
        try await first.start()
        try await second.start()
        let work = try TempDirectory.make("reload")
        let file = work + "/wharf.yaml"
        var wharf: WharfProcess?
        do {
            try "upstreams:\n  - name: one\n    url: \(first.registry.url)\n    tag-ttl: 5m\n".write(toFile: file, atomically: true, encoding: .utf8)
            let started = try await WharfProcess.start(upstream: first.registry.url, dataDirectory: work + "/data", extraArguments: ["--config", file])
            wharf = started
            func get(_ path: String) async throws -> RawHTTP.Response {
                try await RawHTTP.request("GET \(path) HTTP/1.1\r\nHost: w\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n", port: started.port)
            }
            #expect(try await get("/v2/team/a/manifests/v1").status == 200)
            #expect(try await get("/v2/two/team/b/manifests/v1").status == 404, "the second upstream is not configured yet")

            // A second upstream behind a path prefix, a pin, and other connection limits.
            try """
                limits:
                  idle-timeout: 60s
                upstreams:
                  - name: one
                    url: \(first.registry.url)
                    default: true
                    tag-ttl: 1m
                    pin: [team/a:v1]
                  - name: two
                    url: \(second.registry.url)
                    path-prefix: two
                """.write(toFile: file, atomically: true, encoding: .utf8)
            started.child.signal(SIGHUP)
            await eventually(within: .seconds(10), "the reload was not logged") { started.child.output().contains("reload: configuration applied") }
            let routed = try await get("/v2/two/team/b/manifests/v1")
            #expect(routed.status == 200 && routed.header("docker-content-digest") == b.manifest.digest, "\(routed.status)")
            #expect(try await get("/v2/team/a/manifests/v1").status == 200, "the unchanged default upstream stopped serving")
            let log = started.child.output()
            #expect(log.contains("added=two") && log.contains("changed=one"), "\(log.suffix(1500))")
            #expect(log.contains("take effect only after a restart") && log.contains("keys=limits"), "\(log.suffix(1500))")
            #expect(try await get("/ui/cache?q=team/a").bodyText.contains("class=\"pin\""), "the new pin is not in force")
            let stats = try await get("/stats")
            #expect(stats.bodyText.contains("\"name\" : \"two\""), "/stats does not list the new upstream")

            // A file with a mistake: refused whole, the running configuration stays.
            try "upstreams:\n  - name: one\n    urll: nowhere\n".write(toFile: file, atomically: true, encoding: .utf8)
            started.child.signal(SIGHUP)
            await eventually(within: .seconds(10), "the refused reload was not logged") { started.child.output().contains("nothing else changed") }
            #expect(try await get("/v2/two/team/b/manifests/v1").status == 200, "a broken file changed the running configuration")
            #expect(await started.stop() == 0)
            wharf = nil
        } catch {
            Issue.record(error)
        }
        if let wharf { await wharf.stop() }
        await first.stop()
        await second.stop()
        try? FileManager.default.removeItem(atPath: work)
    }
}
