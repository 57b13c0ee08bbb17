import Logging
import OCIDistribution
import ServiceLifecycle
import Synchronization
import WharfConfig
import WharfHTTP
import WharfMirror
import WharfStorage

/// The serving mirror as a ``WarmSource``: manifests resolve and blobs fill exactly as for a client
/// of the default route (routing, policy, single fill per digest), with no HTTP and no client auth.
struct MirrorWarmSource: WarmSource {
    let mirror: Mirror
    /// The Accept header `wharf warm` sends, so tag answers are cached under the same class.
    static let accept = AcceptSet(lines: [WarmClient.accept])

    func manifestBytes(repository: String, reference: String) async throws -> [UInt8] {
        let routed = try self.mirror.route(try RepositoryName(parsing: repository), namespace: nil)
        let parsed = try Reference(parsing: reference)
        guard await self.mirror.manifests.prefetchAllowed(upstream: routed.client, repository: routed.repository, reference: parsed, accept: Self.accept)
        else { throw WarmPaused() }
        let answer = try await self.mirror.manifests.resolve(upstream: routed.chain, repository: routed.repository, reference: parsed, accept: Self.accept)
        return answer.manifest.bytes
    }

    /// Starts (or joins) the fill and waits for it, polling so that a shutdown does not wait for a
    /// large blob; the fill itself goes on and is kept. A blob already cached costs nothing.
    func warmBlob(repository: String, digest rawDigest: String, size: Int64, limiter: RateLimiter) async throws -> Int64 {
        let routed = try self.mirror.route(try RepositoryName(parsing: repository), namespace: nil)
        let digest = try Digest(parsing: rawDigest)
        switch try self.mirror.fills.source(for: digest, upstream: routed.chain, repository: routed.repository) {
        case .cached:
            self.mirror.index.touch(digest)  // warm images stay recently used
            return 0
        case .fill(let following):
            defer { following.release() }  // warm follows its fill: a slow one is not an orphan
            let fill = following.fill
            await limiter.consume(Int(size))  // a fill runs at full speed: the cap spaces fills out
            while true {
                switch fill.snapshot.phase {
                case .complete(let written): return written
                case .failed(let error): throw error
                case .connecting, .streaming: try await Task.sleep(for: .milliseconds(50))
                }
            }
        }
    }
}

/// A warm run skipped an image: fetching it would spend an upstream pull budget down to its reserve.
struct WarmPaused: Error, CustomStringConvertible {
    var description: String { "paused: the upstream's pull budget is down to its reserve (rate-limit-reserve)" }
}

/// `warm` of the configuration: warms the listed images once the server listens, then again every
/// interval, logging a summary per run. Failures (upstream down, unknown image) are logged and the
/// next run tries again; it never holds up serving and stops at graceful shutdown.
struct WarmService: Service {
    /// The `warm` section now: a reload replaces it, and the next run uses it.
    let list: WarmList
    let mirror: Mirror
    let server: RegistryServer
    let logger: Logger
    /// `POST /admin/warm` wakes it for a run now.
    let trigger: WarmTrigger

    init(_ list: WarmList, mirror: Mirror, server: RegistryServer, logger: Logger) {
        self.trigger = mirror.warmTrigger
        self.list = list
        self.mirror = mirror
        self.server = server
        self.logger = logger
    }

    func run() async throws {
        _ = try await self.server.boundPort()
        self.trigger.hasListener = true
        defer { self.trigger.hasListener = false }
        await cancelWhenGracefulShutdown {
            var run = 0
            while !Task.isCancelled {
                run += 1
                let config = self.list.current
                let warmer = Warmer(source: MirrorWarmSource(mirror: self.mirror), platforms: config.platforms, maxRate: config.maxRate)
                let report = await warmer.run(config.images)
                if Task.isCancelled { break }
                self.log(report, run: run, interval: .seconds(config.everySeconds))
                await self.trigger.wait(timeout: .seconds(config.everySeconds))
            }
        }
    }

    private func log(_ report: Warmer.Report, run: Int, interval: Duration) {
        let metadata: Logger.Metadata = ["run": "\(run)", "next-in": "\(interval.components.seconds)s"]
        for failure in report.failures { self.logger.warning("warm: \(failure)", metadata: metadata) }
        if report.failures.isEmpty {
            self.logger.info("warm: \(report.summary)", metadata: metadata)
        } else {
            self.logger.warning("warm: \(report.summary); \(report.failures.count) failure(s), retrying at the next run", metadata: metadata)
        }
    }
}

/// The `warm` section of the running configuration, replaced when it is reloaded.
final class WarmList: Sendable {
    private let value: Mutex<WarmConfiguration>
    init(_ config: WarmConfiguration) { self.value = Mutex(config) }
    var current: WarmConfiguration { self.value.withLock { $0 } }
    func replace(_ config: WarmConfiguration) { self.value.withLock { $0 = config } }
}
