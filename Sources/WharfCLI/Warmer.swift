import Foundation
import OCIDistribution
import Synchronization
import WharfText

/// Where ``Warmer`` reads manifests and fetches blobs: a running Wharf over HTTP (``WarmClient``, for
/// `wharf warm`) or the serving mirror itself (``MirrorWarmSource``, for the `warm` list of `wharf serve`).
protocol WarmSource: Sendable {
    /// The bytes of one manifest, by tag or digest, fetched through the mirror (which caches it).
    func manifestBytes(repository: String, reference: String) async throws -> [UInt8]
    /// Makes sure one blob is cached and returns the bytes moved for it. `size` is the manifest's
    /// figure; `limiter` spreads the bytes under the bandwidth cap.
    func warmBlob(repository: String, digest: String, size: Int64, limiter: RateLimiter) async throws -> Int64
}

/// Fetches images into the cache ahead of demand: their manifests (following indexes to the chosen
/// platforms), then every blob those name, a few at a time, under an optional bandwidth cap.
struct Warmer: Sendable {
    let source: any WarmSource
    /// `OS/ARCH[/VARIANT]` entries of an index to follow; empty follows all.
    var platforms: [String] = []
    /// Average bytes per second; `nil` for no cap.
    var maxRate: Int64?
    /// Blobs fetched at the same time.
    var parallel = 4

    /// What to fetch: blobs by digest (with a repository that names them), and what each image resolved to.
    struct Plan: Sendable {
        var images: [(image: String, result: Result<(manifests: Int, blobs: Int), any Error>)] = []
        var blobs: [(digest: String, repository: String, size: Int64)] = []
        var manifests: Int { self.images.reduce(0) { $0 + ((try? $1.result.get().manifests) ?? 0) } }
        var totalBytes: Int64 { self.blobs.reduce(0) { $0 + $1.size } }
    }

    /// The outcome of one run.
    struct Report: Sendable {
        var images = 0, failedImages = 0, manifests = 0, blobs = 0, warmedBlobs = 0
        var bytes: Int64 = 0
        var duration: Duration = .zero
        /// `image: error` and `digest: error` lines.
        var failures: [String] = []

        /// Every image resolved and every blob of the plan fetched.
        var isComplete: Bool { self.failures.isEmpty && self.failedImages == 0 && self.warmedBlobs == self.blobs }

        var summary: String {
            let seconds = Double(self.duration.components.seconds) + Double(self.duration.components.attoseconds) / 1e18
            return "warmed \(self.images - self.failedImages)/\(self.images) image(s): \(self.manifests) manifest(s), "
                + "\(self.warmedBlobs)/\(self.blobs) blob(s), \(ByteCount.string(self.bytes)) in \(String(format: "%.1f", seconds)) s"
        }
    }

    /// Resolves and fetches `images`; never throws: every failure is in the report.
    func run(_ images: [String]) async -> Report {
        let started = ContinuousClock.now
        var report = await self.fetch(await self.resolve(images))
        report.duration = ContinuousClock.now - started
        return report
    }

    /// Fetches every manifest of `images`; `onImage` hears of each image as it is resolved.
    func resolve(_ images: [String], onImage: (String, Result<(manifests: Int, blobs: Int), any Error>) -> Void = { _, _ in }) async -> Plan {
        var plan = Plan()
        var seen = Set<String>()
        for image in images {
            let result: Result<(manifests: Int, blobs: Int), any Error>
            do {
                let (repository, reference) = try Self.parse(image)
                let found = try await self.blobs(repository: repository, reference: reference)
                for (digest, size) in found.blobs where seen.insert(digest).inserted {
                    plan.blobs.append((digest, repository, size))
                }
                result = .success((found.manifests, found.blobs.count))
            } catch {
                result = .failure(error)
            }
            onImage(image, result)
            plan.images.append((image, result))
        }
        return plan
    }

    /// Fetches the plan's blobs, `parallel` at a time; `onBlob` hears of each one done (its bytes, or nil on failure).
    func fetch(_ plan: Plan, onBlob: (Int64?) -> Void = { _ in }) async -> Report {
        var report = Report(images: plan.images.count, manifests: plan.manifests, blobs: plan.blobs.count)
        for case (let image, .failure(let error)) in plan.images {
            report.failedImages += 1
            report.failures.append("\(image): \(error)")
        }
        let limiter = RateLimiter(bytesPerSecond: self.maxRate)
        let source = self.source
        await withTaskGroup(of: BlobOutcome.self) { group in
            var pending = plan.blobs.makeIterator()
            func add() {
                guard let blob = pending.next() else { return }
                group.addTask { await Self.warm(blob, from: source, limiter: limiter) }
            }
            for _ in 0..<max(1, self.parallel) { add() }
            while let outcome = await group.next() {
                switch outcome.result {
                case .success(let n):
                    report.warmedBlobs += 1
                    report.bytes += n
                    onBlob(n)
                case .failure(let error):
                    report.failures.append("\(outcome.digest): \(error)")
                    onBlob(nil)
                }
                add()
            }
        }
        return report
    }

    /// What became of one blob of the plan.
    struct BlobOutcome: Sendable {
        let digest: String
        let result: Result<Int64, any Error>
    }

    /// Fetches one blob; the outcome is built only once the fetch has returned.
    ///
    /// A child task must not return a tuple whose parts straddle a suspension, like
    /// `(digest, .success(try await …))`: Swift 6.3 in optimised builds writes the part known before
    /// the `await` into the task's result buffer early and loses or misplaces it (swiftlang/swift
    /// #91911, reverted in #92155, still open). The task group's state is then corrupt: `next()` ends
    /// early (results lost, a warm that exits 0), or a child completes into freed memory (SIGSEGV,
    /// "pure virtual method called"). Debug builds are not affected.
    private static func warm(
        _ blob: (digest: String, repository: String, size: Int64), from source: any WarmSource, limiter: RateLimiter
    ) async -> BlobOutcome {
        let result: Result<Int64, any Error>
        do {
            result = .success(try await source.warmBlob(repository: blob.repository, digest: blob.digest, size: blob.size, limiter: limiter))
        } catch {
            result = .failure(error)
        }
        return BlobOutcome(digest: blob.digest, result: result)
    }

    /// Every manifest fetched and every blob (digest → size) the chosen platforms need.
    private func blobs(repository: String, reference: String) async throws -> (manifests: Int, blobs: [(String, Int64)]) {
        struct Descriptor: Decodable {
            let digest: String
            let size: Int64?
            let platform: Platform?
            struct Platform: Decodable { let os: String?; let architecture: String?; let variant: String? }
        }
        struct Manifest: Decodable { let config: Descriptor?; let layers: [Descriptor]?; let manifests: [Descriptor]? }
        var queue = [reference], count = 0
        var blobs: [(String, Int64)] = []
        while let ref = queue.popLast() {
            let bytes = try await self.source.manifestBytes(repository: repository, reference: ref)
            count += 1
            let manifest = try JSONDecoder().decode(Manifest.self, from: Data(bytes))
            let children = (manifest.manifests ?? []).map { child in
                (digest: child.digest, platform: child.platform.map { p in [p.os, p.architecture, p.variant].compactMap { $0 }.joined(separator: "/") })
            }
            let chosen = children.filter { self.wants($0.platform ?? "", known: $0.platform != nil) }
            // Asking for platforms an index does not have fails the image rather than warming nothing.
            if !children.isEmpty, chosen.isEmpty {
                let offered = Set(children.compactMap(\.platform).filter { !$0.isEmpty && $0 != "unknown/unknown" }).sorted()
                throw WarmFailure(
                    "no \(self.platforms.joined(separator: " or ")) in this index; it has "
                        + (offered.isEmpty ? "no platforms listed" : offered.joined(separator: ", ")))
            }
            queue += chosen.map(\.digest)
            if let config = manifest.config { blobs.append((config.digest, config.size ?? 0)) }
            for layer in manifest.layers ?? [] { blobs.append((layer.digest, layer.size ?? 0)) }
        }
        return (count, blobs)
    }

    private func wants(_ platform: String, known: Bool) -> Bool {
        guard !self.platforms.isEmpty else { return true }
        return known && self.platforms.contains { platform == $0 || platform.hasPrefix($0 + "/") }
    }

    /// `REPO[:TAG]` or `REPO@sha256:…` → (repository, tag or digest); the tag defaults to `latest`.
    static func parse(_ image: String) throws -> (repository: String, reference: String) {
        var rest = Substring(image)
        var reference = "latest"
        if let at = rest.firstIndex(of: "@") {
            reference = String(rest[rest.index(after: at)...])
            _ = try Digest(parsing: reference)
            rest = rest[..<at]
        } else if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            reference = String(rest[rest.index(after: colon)...])
            _ = try Tag(parsing: reference)
            rest = rest[..<colon]
        }
        return (try RepositoryName(parsing: rest).value, reference)
    }
}

/// Why an image could not be warmed, in words (`FAILED: <description>`).
struct WarmFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Spreads downloads so their sum stays under a byte rate (nil: no cap).
final class RateLimiter: Sendable {
    private let bytesPerSecond: Int64?
    private let state = Mutex((start: ContinuousClock.now, bytes: Int64(0)))

    init(bytesPerSecond: Int64?) { self.bytesPerSecond = bytesPerSecond }

    /// Accounts `bytes` and waits until the running total is back within the rate.
    func consume(_ bytes: Int) async {
        guard let rate = self.bytesPerSecond else { return }
        let due: Duration = self.state.withLock { s in
            s.bytes += Int64(bytes)
            let allowedAt = s.start + .milliseconds(s.bytes * 1000 / rate)
            return allowedAt - ContinuousClock.now
        }
        if due > .zero { try? await Task.sleep(for: due) }
    }
}
