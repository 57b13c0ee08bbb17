import Foundation
import Synchronization
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfMirror

/// `/_ping`, `/healthz`, `/readyz`, `/stats` (JSON), `/metrics` (Prometheus text) and the `/` dashboard.
struct StatusEndpoint: Sendable {
    let mirror: Mirror
    let about: ServerAbout

    /// Answers `page`; `showNames`: `/stats` and `/` may name repositories (see
    /// ``ClientAuthenticator/seesRepositoryNames(authorization:isSecure:client:)``).
    func serve(_ page: StatusPage, query: ParsedTarget, writer: ResponseWriter, showNames: Bool) async throws {
        let now = self.mirror.wallSeconds()
        switch page {
        case .healthz:
            try await self.send(writer, .ok, "text/plain; charset=utf-8", "ok\n")
        case .ping:
            let problem = self.mirror.readinessProblem()
            let body = #"{"Error":\#(JSONString.quote(problem ?? "")),"Healthy":\#(problem == nil)}"#
            try await self.send(writer, problem == nil ? .ok : .serviceUnavailable, "application/json", body)
        case .readyz:
            let problem = self.mirror.readinessProblem()
            let upstreams = self.mirror.upstreamReachability().map { u in
                #"{"name":\#(JSONString.quote(u.name)),"reachable":\#(u.reachable.map { "\($0)" } ?? "null")}"#
            }
            let body = #"{"ready":\#(problem == nil),"problem":\#(problem.map(JSONString.quote) ?? "null"),"upstreams":[\#(upstreams.joined(separator: ","))]}"#
            try await self.send(writer, problem == nil ? .ok : .serviceUnavailable, "application/json", body)
        case .stats:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            let json = String(decoding: try encoder.encode(self.mirror.statsSnapshot(showNames: showNames)), as: UTF8.self)
            try await self.send(writer, .ok, "application/json", json + "\n")
        case .metrics:
            let text = self.mirror.prometheusText()
            var buffer = writer.allocator.buffer(capacity: text.count)
            buffer.writeBytes(text)
            var h = writer.headers()
            h.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
            try await writer.send(status: .ok, headers: h, body: buffer)
        case .dashboard:
            let page = Dashboard.render(
                self.mirror.statsSnapshot(showNames: showNames), history: self.mirror.history.withLock { $0 }, interval: self.mirror.historyInterval,
                about: self.about, pinnedBytes: self.mirror.catalog.pinnedBytes(), now: now)
            try await self.send(writer, .ok, "text/html; charset=utf-8", page)
        case .cacheBrowser:
            guard showNames else { return try await self.send(writer, .ok, "text/html; charset=utf-8", CacheBrowserPage.signIn()) }
            let q = String((query.queryValue("q") ?? "").prefix(200))
            let catalog = self.mirror.catalog
            let page = catalog.page(query: q, after: query.queryValue("after"))
            try await self.send(writer, .ok, "text/html; charset=utf-8", CacheBrowserPage.list(page, query: q, now: now))
        case .cacheImage:
            guard showNames else { return try await self.send(writer, .ok, "text/html; charset=utf-8", CacheBrowserPage.signIn()) }
            let (u, r, ref) = (query.queryValue("upstream") ?? "", query.queryValue("repository") ?? "", query.queryValue("reference") ?? "")
            let catalog = self.mirror.catalog
            guard let detail = catalog.detail(upstream: u, repository: r, reference: ref) else {
                return try await self.send(writer, .notFound, "text/html; charset=utf-8", CacheBrowserPage.frame(title: "Not cached", body: "<p>No such image in the cache.</p>"))
            }
            try await self.send(writer, .ok, "text/html; charset=utf-8", CacheBrowserPage.detail(detail, now: now))
        case .favicon:
            var h = writer.headers()
            h.add(name: "Content-Type", value: "image/svg+xml")
            h.add(name: "Cache-Control", value: "max-age=86400")
            try await writer.send(status: .ok, headers: h, body: writer.allocator.buffer(string: CacheBrowserPage.favicon))
        }
    }

    private func send(_ writer: ResponseWriter, _ status: HTTPResponseStatus, _ type: String, _ body: String) async throws {
        var h = writer.headers()
        h.add(name: "Content-Type", value: type)
        h.add(name: "Cache-Control", value: "no-store")
        h.add(name: "X-Content-Type-Options", value: "nosniff")
        if type.hasPrefix("text/html") {
            h.add(name: "Content-Security-Policy", value: Dashboard.contentSecurityPolicy)
            h.add(name: "Referrer-Policy", value: "same-origin")
        }
        try await writer.send(status: status, headers: h, body: writer.allocator.buffer(string: body))
    }
}
