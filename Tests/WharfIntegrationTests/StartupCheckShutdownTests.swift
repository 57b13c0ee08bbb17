import Foundation
import OCIDistribution
import Testing
import WharfStorage
import WharfTestSupport

/// The background index ↔ disk check of a big folder must not hold a shutdown: SIGTERM stops it
/// between two batches, and the server exits 0 at once, leaving the rest for the next start.
@Suite(.serialized, .timeLimit(.minutes(4)), .tags(.integration))
struct StartupCheckShutdownTests {
    static let entries = 300_000

    @Test("SIGTERM while the start-up check walks 300,000 entries without files: the check stops, wharf exits 0 within 5 s")
    func sigtermStopsTheStartupCheck() async throws {
        let sandbox = try TempDirectory.make("startcheck")
        defer { try? FileManager.default.removeItem(atPath: sandbox) }
        let data = sandbox + "/data"
        let layout = CacheLayout(root: data)
        try layout.createDirectories()
        do {
            // Records without files: the check drops every one of them, a batch per write transaction.
            let index = try CacheIndex(directory: layout.indexDirectory)
            let now = UInt64(Date().timeIntervalSince1970)
            for start in stride(from: 0, to: Self.entries, by: 100_000) {
                try index.commitBlobs((start..<start + 100_000).map { i in
                    CacheIndex.BlobEntry(digest: Digest.sha256(of: Array("entry \(i)".utf8)), size: 1000, lastAccess: now - UInt64(i % 86_400))
                })
            }
        }
        let server = try await WharfProcess.start(upstream: "http://127.0.0.1:9", dataDirectory: data)
        let asked = ContinuousClock.now
        let status = await server.stop()  // SIGTERM; SIGKILL after 10 s
        let took = ContinuousClock.now - asked
        let log = server.child.output()
        #expect(status == 0, "exit status after SIGTERM: \(status)\n\(log.suffix(3000))")
        #expect(took < .seconds(5), "SIGTERM to exit: \(took)")
        #expect(log.contains("cache check stopped by shutdown"), "\(log.suffix(3000))")
        #expect(!log.contains("cache check finished"))
        let left = try CacheIndex(directory: layout.indexDirectory).counts().blobs
        #expect(left > 0 && left <= Self.entries, "entries the stopped check left for the next start: \(left)")
    }
}
