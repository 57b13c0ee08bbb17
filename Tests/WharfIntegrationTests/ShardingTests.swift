import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import WharfTestSupport

/// Three real `wharf` processes behind the real HAProxy, running the shipped
/// `deploy/haproxy/haproxy.cfg` (only its bind and server addresses are rewritten): blobs are sharded by
/// digest, manifests by repository, a stopped node's share moves to the others.
@Suite(.serialized, .timeLimit(.minutes(5)), .tags(.integration, .realClients))
struct ShardingTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let shippedConfig = packageRoot.appendingPathComponent("deploy/haproxy/haproxy.cfg").path

    /// Fast health checks for the test; everything else (balance, hash-type, ACLs, retries) as shipped.
    static let testServerOptions = "inter 500ms fastinter 250ms downinter 500ms fall 2 rise 1"

    @Test("blobs land on exactly one node, the nodes' /stats add up, a stopped node's share is refetched by the others")
    func shardedCluster() async throws {
        guard FileManager.default.isExecutableFile(atPath: HAProxyProcess.executable) else {
            Issue.record("haproxy is not installed (apt-get install haproxy)")
            return
        }
        let started = ContinuousClock.now
        let upstream = try UpstreamEnvironment()
        var images: [(repository: String, image: GeneratedImage)] = []
        for i in 1...6 {
            let image = try upstream.generator.image(layerSizes: [120_000 + i * 10_000, 60_000, 20_000], format: i % 2 == 0 ? .oci : .dockerSchema2)
            try upstream.storage.add(image: image, repository: "team/app\(i)", tag: "v1")
            images.append(("team/app\(i)", image))
        }
        // The larger set for the throughput comparison: plain blobs in one repository.
        var big: [GeneratedBlob] = []
        for _ in 0..<16 {
            let blob = try upstream.generator.rawBlob(size: 4 << 20)
            try upstream.storage.addBlob(blob, repository: "team/big")
            big.append(blob)
        }
        try await upstream.start()

        let root = try TempDirectory.make("sharding")
        var nodes: [WharfProcess] = []
        var haproxy: HAProxyProcess?
        var single: WharfProcess?
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            for i in 1...3 {
                nodes.append(try await WharfProcess.start(upstream: upstream.registry.url, dataDirectory: root + "/node\(i)"))
            }
            let template = try String(contentsOfFile: Self.shippedConfig, encoding: .utf8)
            let lb = try await HAProxyProcess.start(
                template: template, backend: "wharf", backendPorts: nodes.map(\.port), serverOptions: Self.testServerOptions)
            haproxy = lb
            let serverNames = ["wharf1", "wharf2", "wharf3"]  // in the order of the shipped server lines
            #expect(Set(try await lb.serverStates().keys) == Set(serverNames))

            // 1. skopeo pulls every image through HAProxy.
            try await Self.pullAll(images, via: lb.host, into: root + "/pull1")
            let distinct = Set(images.flatMap { $0.image.blobs.map(\.hex) })

            // 2. Every blob is on exactly one node.
            var placement = nodes.map { CacheFiles.blobs(in: $0.dataDirectory) }
            for hex in distinct {
                let holders = placement.indices.filter { placement[$0][hex] != nil }
                #expect(holders.count == 1, "blob \(hex.prefix(12)) is on nodes \(holders.map { $0 + 1 })")
            }
            #expect(placement.map(\.count).reduce(0, +) == distinct.count, "nodes hold blobs no pull asked for")
            print("sharding: \(distinct.count) blobs of \(images.count) images → blobs per node \(placement.map(\.count))")

            // 3. The nodes' /stats add up: one fill per distinct blob across the cluster, one manifest per repository.
            let stats = try await nodes.asyncMap { try await Self.stats($0.port) }
            let fillsCompleted = stats.map { Self.number($0, "fills", "completed") }.reduce(0, +)
            let fillsFailed = stats.map { Self.number($0, "fills", "failed") }.reduce(0, +)
            let blobEntries = stats.map { Self.number($0, "entries", "blobs") }.reduce(0, +)
            let blobMisses = stats.map { Self.number($0, "cache", "blobMisses") }.reduce(0, +)
            let manifestEntries = stats.map { Self.number($0, "entries", "manifests") }.reduce(0, +)
            let fetched = stats.map { Self.number($0, "bytes", "fetchedFromUpstream") }.reduce(0, +)
            let distinctBytes = Set(images.flatMap(\.image.blobs)).map(\.size).reduce(0, +)
            #expect(fillsCompleted == distinct.count, "fills completed per node: \(stats.map { Self.number($0, "fills", "completed") })")
            #expect(fillsFailed == 0)
            #expect(blobEntries == distinct.count)
            #expect(blobMisses == distinct.count)
            #expect(manifestEntries == images.count, "manifests per node: \(stats.map { Self.number($0, "entries", "manifests") })")
            #expect(fetched >= distinctBytes, "bytes fetched \(fetched) < blob bytes \(distinctBytes)")
            // Each repository's manifest is on one node only: the one its repository hashes to.
            print("sharding: fills completed per node \(stats.map { Self.number($0, "fills", "completed") }), manifests per node \(stats.map { Self.number($0, "entries", "manifests") })")

            // 4. Throughput of a larger blob set: HAProxy in front of three nodes vs. one node alone.
            let bigBytes = big.map(\.size).reduce(0, +)
            let clusterCold = try await Self.fetch(big, repository: "team/big", base: lb.url, client: http)
            var clusterWarm: [Double] = []
            for _ in 0..<3 { clusterWarm.append(try await Self.fetch(big, repository: "team/big", base: lb.url, client: http)) }
            let alone = try await WharfProcess.start(upstream: upstream.registry.url, dataDirectory: root + "/single")
            single = alone
            let singleCold = try await Self.fetch(big, repository: "team/big", base: alone.url, client: http)
            var singleWarm: [Double] = []
            for _ in 0..<3 { singleWarm.append(try await Self.fetch(big, repository: "team/big", base: alone.url, client: http)) }
            func mbps(_ seconds: Double) -> String { String(format: "%.0f MB/s", Double(bigBytes) / seconds / 1e6) }
            print(
                "sharding: throughput, \(big.count) blobs × \(big[0].size >> 20) MiB, 8 connections: "
                    + "HAProxy+3 nodes cold \(mbps(clusterCold)), warm \(clusterWarm.map(mbps).joined(separator: " / ")); "
                    + "single node cold \(mbps(singleCold)), warm \(singleWarm.map(mbps).joined(separator: " / "))")
            placement = nodes.map { CacheFiles.blobs(in: $0.dataDirectory) }
            for blob in big {
                #expect(placement.filter { $0[blob.hex] != nil }.count == 1, "big blob \(blob.hex.prefix(12)) not on exactly one node")
            }
            print("sharding: big blobs per node \(placement.map { p in big.filter { p[$0.hex] != nil }.count })")

            // 5. Stop the node holding the most blobs; HAProxy marks it down, its share moves along the ring.
            let victim = placement.indices.max { placement[$0].count < placement[$1].count }!
            let orphaned = Set(placement[victim].keys).intersection(distinct)
            let survivorsBefore = placement.indices.filter { $0 != victim }.map { (index: $0, blobs: Set(placement[$0].keys)) }
            let blobGETsBefore = try upstream.registry.requestCount(method: "GET", pathContaining: "/blobs/")
            let stopAt = ContinuousClock.now
            await nodes[victim].stop()
            try await lb.waitUntilServers([serverNames[victim]], are: "DOWN", timeout: .seconds(10))
            print("sharding: stopped node \(victim + 1) (\(orphaned.count) image blobs); HAProxy marked it DOWN after \(ContinuousClock.now - stopAt)")

            try await Self.pullAll(images, via: lb.host, into: root + "/pull2")
            try await Task.sleep(for: .milliseconds(300))  // the registry logs a request after its response
            let blobGETsAfter = try upstream.registry.requestCount(method: "GET", pathContaining: "/blobs/")
            let after = placement.indices.map { $0 == victim ? [:] : CacheFiles.blobs(in: nodes[$0].dataDirectory) }
            for hex in distinct {
                let holders = after.indices.filter { after[$0][hex] != nil }
                #expect(holders.count == 1, "after the stop, blob \(hex.prefix(12)) is on nodes \(holders.map { $0 + 1 })")
            }
            for survivor in survivorsBefore {
                #expect(survivor.blobs.isSubset(of: Set(after[survivor.index].keys)), "node \(survivor.index + 1) lost blobs")
            }
            // Only the stopped node's share was fetched again; the survivors kept serving theirs from disk.
            #expect(blobGETsAfter - blobGETsBefore == orphaned.count, "upstream blob GETs after the stop: \(blobGETsAfter - blobGETsBefore), orphaned \(orphaned.count)")
            print("sharding: after the stop, blobs per node \(after.map(\.count)); upstream blob GETs for the refetch \(blobGETsAfter - blobGETsBefore)")
            print("sharding: test took \(ContinuousClock.now - started)")
        } catch {
            Issue.record(error)
            if let haproxy { print("haproxy output:\n\(haproxy.output().suffix(4000))") }
        }
        try? await http.shutdown()
        await haproxy?.stop()
        for node in nodes { await node.stop() }
        if let single { await single.stop() }
        await upstream.stop()
        try? FileManager.default.removeItem(atPath: root)
    }

    /// skopeo copies every image from `host` (three at a time) and each copy is checked blob by blob.
    static func pullAll(_ images: [(repository: String, image: GeneratedImage)], via host: String, into directory: String) async throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, entry) in images.enumerated() {
                if i >= 3 { try await group.next() }
                group.addTask {
                    let dest = directory + "/" + entry.repository.replacingOccurrences(of: "/", with: "_")
                    let r = try await Skopeo.copy(source: "docker://\(host)/\(entry.repository):v1", destinationDirectory: dest, timeout: .seconds(60))
                    #expect(r.status == 0, "skopeo \(entry.repository) through \(host): \(r.output)")
                    #expect(try SkopeoDir.verify(directory: dest, expected: entry.image.blobs) == [], "\(entry.repository)")
                }
            }
            try await group.waitForAll()
        }
    }

    /// GETs every blob over 8 connections; returns the seconds it took. Each body must have the blob's size.
    static func fetch(_ blobs: [GeneratedBlob], repository: String, base: String, client: HTTPClient) async throws -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, blob) in blobs.enumerated() {
                if i >= 8 { try await group.next() }
                group.addTask {
                    let response = try await client.execute(HTTPClientRequest(url: "\(base)/v2/\(repository)/blobs/\(blob.digest)"), timeout: .seconds(60))
                    var received = 0
                    for try await chunk in response.body { received += chunk.readableBytes }
                    #expect(response.status == .ok && received == blob.size, "\(blob.digest) via \(base): \(response.status), \(received) bytes")
                }
            }
            try await group.waitForAll()
        }
        let elapsed = clock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    static func stats(_ port: Int) async throws -> [String: Any] {
        let r = try await RawHTTP.request("GET /stats HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: port)
        guard r.status == 200, let object = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any] else {
            throw FixtureError.invalid("/stats on \(port): \(r.status) \(r.bodyText)")
        }
        return object
    }

    static func number(_ stats: [String: Any], _ section: String, _ key: String) -> Int {
        ((stats[section] as? [String: Any])?[key] as? NSNumber)?.intValue ?? -1
    }
}

extension Array {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        out.reserveCapacity(self.count)
        for element in self { out.append(try await transform(element)) }
        return out
    }
}
