import ArgumentParser
import Foundation
import WharfConfig

/// `wharf warm IMAGE…`: pulls images through a running Wharf so their manifests and layers are
/// cached before anyone asks (the cache's version of pull mirroring). Bodies are read and dropped.
struct WarmCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warm", abstract: "Fetch images into a running Wharf's cache ahead of demand.")

    @Argument(help: "Images as the mirror's clients name them: REPO[:TAG] or REPO@sha256:… (e.g. library/alpine:3.20, ghcr/org/tool:1).")
    var images: [String]

    @Option(help: "Base URL of the running Wharf, http(s)://HOST:PORT (HOST:PORT means http://).")
    var url = CommandHTTPClient.defaultURL

    @Option(name: .customLong("platform"), help: "Only this platform of multi-arch images, OS/ARCH[/VARIANT] (repeatable; default all).")
    var platforms: [String] = []

    @Option(name: .customLong("max-rate"), help: "Bandwidth cap for layer downloads per second, e.g. 50MiB or 50MB (MiB: 2^20 bytes, MB: 10^6).")
    var maxRate: String?

    @Option(help: "containerd-style namespace to route by (e.g. docker.io), if the mirror routes by ns.")
    var ns: String?

    @Option(help: "File holding 'user:password' for a Wharf that requires client authentication.")
    var credentials: String?

    @Option(help: "Blobs fetched at the same time.")
    var parallel = 4

    func validate() throws {
        _ = try CommandHTTPClient.baseURL(self.url)
        for platform in self.platforms {
            if let problem = CommandLineValues.platformProblem(platform) { throw ValidationError("--platform: \(problem)") }
        }
        _ = try self.rate()
        guard self.parallel >= 1 else { throw ValidationError("--parallel must be at least 1") }
    }

    /// `--max-rate` in bytes per second, or nil for no cap.
    private func rate() throws -> Int64? {
        try self.maxRate.map { text in
            let bytes = try ServeCommand.parse(text, origin: "--max-rate", CommandLineValues.bytes)
            guard bytes > 0 else { throw ValidationError("--max-rate must be more than 0 bytes per second (leave it out for no cap)") }
            return bytes
        }
    }

    func run() async throws {
        let base = try CommandHTTPClient.baseURL(self.url)
        let rate = try self.rate()
        var authorization: String?
        if let file = self.credentials {
            let line = try String(contentsOfFile: file, encoding: .utf8).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
            authorization = "Basic " + Data(line.utf8).base64EncodedString()
        }
        try await CommandHTTPClient.run { client in
            let source = WarmClient(base: base, ns: self.ns, authorization: authorization, client: client)
            try await source.checkReachable()
            try await self.warm(Warmer(source: source, platforms: self.platforms, maxRate: rate, parallel: self.parallel))
        }
    }

    /// Resolves and fetches the images, printing each image, the progress and a summary.
    /// - Throws: `ExitCode(1)` unless every image resolved and every blob was fetched.
    private func warm(_ warmer: Warmer) async throws {
        let started = ContinuousClock.now
        let plan = await warmer.resolve(self.images) { image, result in
            switch result {
            case .success(let found): print("\(image): \(found.manifests) manifest(s), \(found.blobs) blob(s)")
            case .failure(let error): print("\(image): FAILED: \(error)")
            }
        }
        let progress = ProgressReporter(total: plan.blobs.count, totalBytes: plan.totalBytes, verb: "warmed")
        var report = await warmer.fetch(plan) { bytes in
            if let bytes { progress.advance(bytes: Int(bytes)) }
            progress.itemDone()
        }
        progress.finish()
        report.duration = ContinuousClock.now - started
        print(report.summary)
        guard report.isComplete else {
            report.failures.forEach { print("failed: \($0)") }
            if report.failures.isEmpty { print("failed: \(report.blobs - report.warmedBlobs) blob(s) not fetched") }
            throw ExitCode(1)
        }
    }
}
