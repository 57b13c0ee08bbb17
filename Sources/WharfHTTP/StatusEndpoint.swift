import Foundation
import Synchronization
import NIOCore
import NIOHTTP1
import OCIDistribution
import WharfMirror
import WharfStorage
import WharfUpstream

/// `/_ping`, `/healthz`, `/readyz`, `/stats` (JSON), `/metrics` (Prometheus text) and the `/` dashboard.
struct StatusEndpoint: Sendable {
    let mirror: Mirror

    /// Answers `page`; `showNames`: `/stats` and `/` may name repositories (see
    /// ``ClientAuthenticator/seesRepositoryNames(authorization:isSecure:client:)``).
    func serve(_ page: StatusPage, writer: ResponseWriter, showNames: Bool) async throws {
        writer.outcome = "status"
        switch page {
        case .healthz:
            try await self.send(writer, .ok, "text/plain; charset=utf-8", "ok\n")
        case .ping:
            let problem = self.readinessProblem()
            let body = #"{"Error":\#(JSONString.quote(problem ?? "")),"Healthy":\#(problem == nil)}"#
            try await self.send(writer, problem == nil ? .ok : .serviceUnavailable, "application/json", body)
        case .readyz:
            let problem = self.readinessProblem()
            let upstreams = self.mirror.upstreams.map { u in
                #"{"name":\#(JSONString.quote(u.configuration.name)),"reachable":\#(u.health.reachable.map { "\($0)" } ?? "null")}"#
            }
            let body = #"{"ready":\#(problem == nil),"problem":\#(problem.map(JSONString.quote) ?? "null"),"upstreams":[\#(upstreams.joined(separator: ","))]}"#
            try await self.send(writer, problem == nil ? .ok : .serviceUnavailable, "application/json", body)
        case .stats:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            let json = String(decoding: try encoder.encode(StatsSnapshot(mirror: self.mirror, showNames: showNames)), as: UTF8.self)
            try await self.send(writer, .ok, "application/json", json + "\n")
        case .metrics:
            let health = self.mirror.upstream.health
            let allUp = self.mirror.upstreams.allSatisfy { $0.health.reachable != false }
            let text = self.mirror.stats.prometheusText(
                fillsInFlight: self.mirror.fills.inFlight, entries: try? self.mirror.index.counts(), upstreamUp: allUp,
                rateLimitRemaining: health.rateLimitRemaining.flatMap { Double($0.split(separator: ";").first.map(String.init) ?? "") },
                diskUsed: self.mirror.budget.occupiedBytes, diskLimit: self.mirror.budget.limits?.maxBytes,
                evictedBlobs: self.mirror.evictor.counters.evictedBlobs.load(ordering: .relaxed),
                evictedBytes: self.mirror.evictor.counters.evictedBytes.load(ordering: .relaxed))
            var buffer = writer.allocator.buffer(capacity: text.count)
            buffer.writeBytes(text)
            var h = writer.headers()
            h.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
            try await writer.send(status: .ok, headers: h, body: buffer)
        case .dashboard:
            try await self.send(writer, .ok, "text/html; charset=utf-8", Dashboard.render(StatsSnapshot(mirror: self.mirror, showNames: showNames)))
        }
    }

    private func send(_ writer: ResponseWriter, _ status: HTTPResponseStatus, _ type: String, _ body: String) async throws {
        var h = writer.headers()
        h.add(name: "Content-Type", value: type)
        h.add(name: "Cache-Control", value: "no-store")
        try await writer.send(status: status, headers: h, body: writer.allocator.buffer(string: body))
    }

    /// Nil when ready: the index answers and the cache folder takes writes.
    private func readinessProblem() -> String? {
        do { _ = try self.mirror.index.counts() } catch { return "index unavailable: \(error)" }
        let probe = self.mirror.layout.tempDirectory + "/.ready-probe-\(UInt32.random(in: 0...UInt32.max))"
        guard FileManager.default.createFile(atPath: probe, contents: Data("ok".utf8)) else { return "cache folder is not writable" }
        try? FileManager.default.removeItem(atPath: probe)
        return nil
    }
}
