import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix

/// Options shared by `run` and `pull`: where the server is, what to label the result with, which
/// server processes to sample, where to write the JSON line.
struct CommonOptions: ParsableArguments {
    @Option(help: "Base URL of the server, http://HOST:PORT.")
    var url: String

    @Option(name: .customLong("accept"), help: "Accept header sent with every request.")
    var accept: String?

    @Option(name: .customLong("header"), help: "Extra request header 'Name: value' (repeatable).")
    var headers: [String] = []

    @Option(name: .customLong("server-pid"), help: "Server process to sample: CPU time (utime+stime) and peak RSS (repeatable; summed).")
    var serverPIDs: [Int32] = []

    @Flag(name: .customLong("server-children"), help: "Also sample the direct children of each --server-pid (nginx workers).")
    var serverChildren = false

    @Option(name: .customLong("label"), help: "KEY=VALUE copied into the JSON line (repeatable; numbers stay numbers).")
    var labels: [String] = []

    @Option(help: "Event-loop threads (default: number of cores).")
    var threads: Int = System.coreCount

    @Option(help: "Also append the JSON line to this file.")
    var out: String?

    @Flag(name: .customLong("fail-on-error"), help: "Exit 1 when any request failed (status or connection).")
    var failOnError = false

    func labelFields() throws -> [String: Any] {
        var fields: [String: Any] = [:]
        for label in labels {
            guard let eq = label.firstIndex(of: "=") else { throw ValidationError("--label needs KEY=VALUE: \(label)") }
            let key = String(label[..<eq])
            let value = String(label[label.index(after: eq)...])
            if let int = Int(value) {
                fields[key] = int
            } else if let double = Double(value), value.contains(".") {
                fields[key] = double
            } else {
                fields[key] = value
            }
        }
        return fields
    }

    /// Prints `fields` as one JSON line (and appends it to --out).
    func emit(_ fields: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes])
        var line = String(decoding: data, as: UTF8.self)
        line += "\n"
        FileHandle.standardOutput.write(Data(line.utf8))
        if let out {
            if !FileManager.default.fileExists(atPath: out) { _ = FileManager.default.createFile(atPath: out, contents: nil) }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(line.utf8))
            try handle.close()
        }
    }
}

func ms(_ micros: UInt64) -> Double { (Double(micros) / 1000 * 1000).rounded() / 1000 }

func round3(_ x: Double) -> Double { (x * 1000).rounded() / 1000 }

/// Latency and resource fields common to `run` and `pull`.
func resultFields(
    latency: Histogram<UInt64>, firstByte: Histogram<UInt64>?, completed: Int, bytes: Int, seconds: Double,
    server: ServerSampler.Result?, clientCPU: Double
) -> [String: Any] {
    var fields: [String: Any] = [
        "requests": completed,
        "bytes": bytes,
        "seconds": round3(seconds),
        "rps": round3(Double(completed) / seconds),
        "mbps": round3(Double(bytes) / 1e6 / seconds),
        "client_cpu_s": round3(clientCPU),
    ]
    if latency.totalCount > 0 {
        fields["p50_ms"] = ms(latency.valueAtPercentile(50))
        fields["p90_ms"] = ms(latency.valueAtPercentile(90))
        fields["p99_ms"] = ms(latency.valueAtPercentile(99))
        fields["p999_ms"] = ms(latency.valueAtPercentile(99.9))
        fields["max_ms"] = ms(latency.max)
        fields["mean_ms"] = round3(latency.mean / 1000)
    }
    if let firstByte, firstByte.totalCount > 0 {
        fields["ttfb_p50_ms"] = ms(firstByte.valueAtPercentile(50))
        fields["ttfb_p99_ms"] = ms(firstByte.valueAtPercentile(99))
        fields["ttfb_max_ms"] = ms(firstByte.max)
    }
    if let server {
        fields["server_cpu_s"] = round3(server.cpuSeconds)
        let gib = Double(bytes) / Double(1 << 30)
        if gib > 0 { fields["server_cpu_s_per_gib"] = round3(server.cpuSeconds / gib) }
        fields["server_rss_peak_mib"] = round3(Double(server.peakKiB) / 1024)
        fields["server_rss_peak_since_start"] = server.peakSinceRunStart
        fields["server_rss_sampled_max_mib"] = round3(Double(server.sampledMaxKiB) / 1024)
    }
    return fields
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Closed-loop (or fixed-rate) GET load over keep-alive HTTP/1.1 connections; prints one JSON line.")

    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("path"), help: "Request path (repeatable).")
    var paths: [String] = []

    @Option(name: .customLong("paths-file"), help: "File with one request path per line.")
    var pathsFile: String?

    @Option(name: [.short, .customLong("concurrency")], help: "Connections, each with one request in flight.")
    var concurrency: Int = 1

    @Option(help: "Seconds to run (requests in flight at the end are cut off; their bytes count).")
    var duration: Double?

    @Option(help: "Total requests to issue (instead of --duration); the run ends when all completed.")
    var requests: Int?

    @Option(help: "Fixed total request rate (req/s) spread over the connections; latency counts from the intended start.")
    var rate: Double?

    @Option(help: "random: each request picks a random path; sequential: paths in order (each once with --requests = number of paths).")
    var order: String = "random"

    @Option(name: .customLong("expect-status"), help: "Accepted status code (repeatable, default 200).")
    var expectStatus: [UInt] = []

    @Option(name: .customLong("max-time"), help: "Safety limit for --requests runs, seconds.")
    var maxTime: Double = 900

    func validate() throws {
        if duration == nil && requests == nil { throw ValidationError("give --duration or --requests") }
        if concurrency < 1 { throw ValidationError("--concurrency must be ≥ 1") }
        if order != "random" && order != "sequential" { throw ValidationError("--order is random or sequential") }
    }

    func run() async throws {
        var allPaths = paths
        if let pathsFile {
            let text = try String(contentsOfFile: pathsFile, encoding: .utf8)
            allPaths += text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
        }
        guard !allPaths.isEmpty else { throw ValidationError("no paths: give --path or --paths-file") }
        let target = try Target(url: common.url, accept: common.accept, headers: common.headers)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, common.threads))
        let loops = Array(group.makeIterator())
        let loopStats = loops.map { _ in LoopStats() }

        let sampler = ServerSampler(pids: ProcStats.expand(common.serverPIDs, children: common.serverChildren))
        sampler.startSampling()
        let cpuBefore = ownCPUSeconds()
        let start = nowNanos()
        let deadline: UInt64 =
            if let duration { start + UInt64(duration * 1e9) } else { start + UInt64(maxTime * 1e9) }
        let interval: UInt64 = rate.map { UInt64(Double(concurrency) / $0 * 1e9) } ?? 0
        let shared = RunShared(
            target: target, paths: allPaths, sequential: order == "sequential",
            expectStatus: Set(expectStatus.isEmpty ? [200] : expectStatus),
            deadline: deadline, requestBudget: requests ?? Int.max, intervalNanos: interval)
        var workers: [Worker] = []
        for i in 0..<concurrency {
            let slot = interval > 0 ? start + interval * UInt64(i) / UInt64(concurrency) : 0
            let worker = Worker(
                loop: loops[i % loops.count], shared: shared, stats: loopStats[i % loops.count],
                seed: 0x5EED &+ UInt64(i) &* 7919, firstSlot: slot)
            workers.append(worker)
        }
        for worker in workers { worker.begin() }
        for worker in workers { try await worker.done.futureResult.get() }
        let end = nowNanos()
        let server = sampler.stop()
        let clientCPU = ownCPUSeconds() - cpuBefore

        // Merge the per-loop statistics (read on their loops).
        var latency = Histogram<UInt64>.latency()
        var firstByte = latency
        var completed = 0, errors = 0, statusErrors = 0, connectionErrors = 0, bytes = 0, completedBytes = 0, connects = 0
        var statuses: [String: Int] = [:]
        var firstError: String?
        for (loop, stats) in zip(loops, loopStats) {
            let snapshot = try await loop.submit {
                (stats.latency, stats.firstByte, stats.completed, stats.errors, stats.statusErrors, stats.connectionErrors,
                 stats.bytes, stats.completedBytes, stats.connects, stats.statusCounts, stats.firstErrorMessage)
            }.get()
            latency.add(snapshot.0)
            firstByte.add(snapshot.1)
            completed += snapshot.2
            errors += snapshot.3
            statusErrors += snapshot.4
            connectionErrors += snapshot.5
            bytes += snapshot.6
            completedBytes += snapshot.7
            connects += snapshot.8
            for (code, n) in snapshot.9.enumerated() where n > 0 { statuses[String(code), default: 0] += n }
            firstError = firstError ?? snapshot.10
        }
        try await group.shutdownGracefully()

        let seconds = Double(end - start) / 1e9
        var fields = try common.labelFields()
        for (key, value) in resultFields(
            latency: latency, firstByte: firstByte, completed: completed, bytes: bytes, seconds: seconds,
            server: server, clientCPU: clientCPU)
        {
            fields[key] = value
        }
        fields["errors"] = errors
        fields["status_errors"] = statusErrors
        fields["connection_errors"] = connectionErrors
        fields["completed_bytes"] = completedBytes
        fields["connects"] = connects
        fields["statuses"] = statuses
        fields["concurrency"] = fields["concurrency"] ?? concurrency
        fields["paths"] = allPaths.count
        if let rate { fields["rate"] = rate }
        if let firstError { fields["first_error"] = firstError }
        if let requests, completed < requests, errors == 0 {
            fields["errors"] = requests - completed
            fields["first_error"] = "only \(completed) of \(requests) requests completed within --max-time"
        }
        try common.emit(fields)
        if common.failOnError, (fields["errors"] as? Int ?? 0) > 0 { throw ExitCode(1) }
    }
}
