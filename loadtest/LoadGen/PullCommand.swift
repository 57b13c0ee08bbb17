import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One keep-alive connection used request by request from async code (pulls).
final class AsyncConnection: ResponseDelegate, @unchecked Sendable {
    struct Response: Sendable {
        var status: UInt
        var bytes: Int
        var body: ByteBuffer?
        var firstByteNanos: UInt64
        var totalNanos: UInt64
    }

    let loop: any EventLoop
    let target: Target
    private var channel: (any Channel)?
    private var handler: ResponseHandler?
    private var promise: EventLoopPromise<Response>?
    private var response = Response(status: 0, bytes: 0, body: nil, firstByteNanos: 0, totalNanos: 0)
    private var collect = false
    private var start: UInt64 = 0
    private var keepAlive = true
    /// Body bytes received by this connection so far (also from failed responses).
    private(set) var receivedBytes = 0

    init(loop: any EventLoop, target: Target) {
        self.loop = loop
        self.target = target
    }

    func get(_ path: String, accept: String?, collect: Bool) async throws -> Response {
        try await loop.flatSubmit { self.start(path: path, accept: accept, collect: collect) }.get()
    }

    private func start(path: String, accept: String?, collect: Bool) -> EventLoopFuture<Response> {
        let promise = loop.makePromise(of: Response.self)
        self.promise = promise
        self.collect = collect
        let request = target.request(path: path, accept: accept)
        let channelFuture: EventLoopFuture<any Channel>
        if let channel, channel.isActive {
            channelFuture = loop.makeSucceededFuture(channel)
        } else {
            let handler = ResponseHandler()
            handler.delegate = self
            self.handler = handler
            channelFuture = target.connect(on: loop, handler: handler)
        }
        channelFuture.whenComplete { result in
            switch result {
            case .success(let channel):
                self.channel = channel
                self.response = Response(status: 0, bytes: 0, body: collect ? ByteBuffer() : nil, firstByteNanos: 0, totalNanos: 0)
                self.keepAlive = true
                self.handler?.inFlight = true
                self.start = nowNanos()
                channel.writeAndFlush(request, promise: nil)
            case .failure(let error):
                self.promise = nil
                promise.fail(error)
            }
        }
        return promise.futureResult
    }

    func responseHead(status: UInt, keepAlive: Bool) {
        response.status = status
        response.firstByteNanos = nowNanos() - start
        self.keepAlive = keepAlive
    }

    func responseBody(_ buffer: ByteBuffer) {
        response.bytes += buffer.readableBytes
        receivedBytes += buffer.readableBytes
        if collect {
            var buffer = buffer
            response.body?.writeBuffer(&buffer)
        }
    }

    func responseEnd() {
        response.totalNanos = nowNanos() - start
        if !keepAlive {
            handler?.delegate = nil
            channel?.close(promise: nil)
            channel = nil
        }
        let promise = self.promise
        self.promise = nil
        promise?.succeed(response)
    }

    func connectionClosed(midResponse: Bool, error: (any Error)?) {
        channel = nil
        if let promise {
            self.promise = nil
            promise.fail(error ?? LoadGenError.http("connection closed mid-response"))
        }
    }

    func close() async {
        try? await loop.submit { self.handler?.delegate = nil; self.channel?.close(promise: nil); self.channel = nil }.get()
    }
}

/// A mutex-guarded value that closures can share.
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}

/// Totals of a pull run, guarded by a mutex.
struct PullTotals {
    var imageLatency = Histogram<UInt64>.latency()
    var requestLatency = Histogram<UInt64>.latency()
    var firstByte = Histogram<UInt64>.latency()
    var images = 0
    var requests = 0
    var errors = 0
    var bytes = 0
    var firstError: String?

    mutating func error(_ message: String) {
        errors += 1
        if firstError == nil { firstError = message }
    }
}

struct PullCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Whole-image pulls: manifest by tag, then its config and layers over --parallel connections; prints one JSON line.",
        discussion: "Each line of --images-file is REPO:TAG (or REPO TAG). --concurrency pullers run at once; each pulls images in file order (each once with --count = number of images) or in a loop for --duration seconds.")

    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("images-file"), help: "File with one REPO:TAG per line.")
    var imagesFile: String

    @Option(name: [.short, .customLong("concurrency")], help: "Concurrent image pulls.")
    var concurrency: Int = 1

    @Option(help: "Blob downloads in parallel per pull (docker's default is 3).")
    var parallel: Int = 3

    @Option(help: "Number of image pulls (in file order, wrapping); default: each image once.")
    var count: Int?

    @Option(help: "Pull in a loop for this many seconds instead of --count.")
    var duration: Double?

    func run() async throws {
        let text = try String(contentsOfFile: imagesFile, encoding: .utf8)
        let images: [(repo: String, tag: String)] = text.split(whereSeparator: \.isNewline).compactMap { line in
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if parts.count >= 2 { return (String(parts[0]), String(parts[1])) }
            guard let colon = line.lastIndex(of: ":") else { return nil }
            return (String(line[..<colon]), String(line[line.index(after: colon)...]))
        }
        guard !images.isEmpty else { throw ValidationError("no images in \(imagesFile)") }
        let accept = common.accept ?? [
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
        ].joined(separator: ", ")
        let target = try Target(url: common.url, accept: nil, headers: common.headers)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, common.threads))
        let loops = Array(group.makeIterator())
        let budget = duration == nil ? (count ?? images.count) : Int.max
        let deadline = duration.map { nowNanos() + UInt64($0 * 1e9) } ?? UInt64.max
        let next = Shared(0)
        let totals = Shared(PullTotals())

        let sampler = ServerSampler(pids: ProcStats.expand(common.serverPIDs, children: common.serverChildren))
        sampler.startSampling()
        let cpuBefore = ownCPUSeconds()
        let start = nowNanos()
        let parallel = max(1, self.parallel)
        await withTaskGroup(of: Void.self) { tasks in
            for puller in 0..<concurrency {
                let connections = (0..<parallel).map { AsyncConnection(loop: loops[(puller * parallel + $0) % loops.count], target: target) }
                tasks.addTask {
                    while nowNanos() < deadline {
                        let n = next.withLock { value in defer { value += 1 }; return value }
                        if n >= budget { break }
                        let image = images[n % images.count]
                        await Self.pull(image: image, accept: accept, connections: connections, totals: totals)
                    }
                    for connection in connections { await connection.close() }
                }
            }
        }
        let end = nowNanos()
        let server = sampler.stop()
        let clientCPU = ownCPUSeconds() - cpuBefore
        try await group.shutdownGracefully()

        let t = totals.withLock { $0 }
        var fields = try common.labelFields()
        for (key, value) in resultFields(
            latency: t.requestLatency, firstByte: t.firstByte, completed: t.requests, bytes: t.bytes,
            seconds: Double(end - start) / 1e9, server: server, clientCPU: clientCPU)
        {
            fields[key] = value
        }
        fields["images"] = t.images
        fields["images_per_s"] = round3(Double(t.images) / (Double(end - start) / 1e9))
        if t.imageLatency.totalCount > 0 {
            fields["image_p50_ms"] = ms(t.imageLatency.valueAtPercentile(50))
            fields["image_max_ms"] = ms(t.imageLatency.max)
        }
        fields["errors"] = t.errors
        fields["concurrency"] = fields["concurrency"] ?? concurrency
        fields["parallel"] = parallel
        if let first = t.firstError { fields["first_error"] = first }
        try common.emit(fields)
        if common.failOnError, t.errors > 0 { throw ExitCode(1) }
    }

    /// Pulls one image: manifest, then config and layers spread over `connections`.
    static func pull(image: (repo: String, tag: String), accept: String, connections: [AsyncConnection], totals: Shared<PullTotals>) async {
        let begin = nowNanos()
        func record(_ response: AsyncConnection.Response) {
            totals.withLock {
                $0.requests += 1
                $0.bytes += response.bytes
                $0.requestLatency.record(response.totalNanos / 1000)
                $0.firstByte.record(response.firstByteNanos / 1000)
            }
        }
        let manifestPath = "/v2/\(image.repo)/manifests/\(image.tag)"
        let digests: [String]
        do {
            let response = try await connections[0].get(manifestPath, accept: accept, collect: true)
            record(response)
            guard response.status == 200, let body = response.body else {
                totals.withLock { $0.error("\(manifestPath): status \(response.status)") }
                return
            }
            digests = try blobDigests(manifest: body)
        } catch {
            totals.withLock { $0.error("\(manifestPath): \(error)") }
            return
        }
        let queue = Shared(digests[...])
        await withTaskGroup(of: Void.self) { tasks in
            for connection in connections {
                tasks.addTask {
                    while let digest = queue.withLock({ $0.popFirst() }) {
                        let path = "/v2/\(image.repo)/blobs/\(digest)"
                        do {
                            let response = try await connection.get(path, accept: nil, collect: false)
                            record(response)
                            if response.status != 200 { totals.withLock { $0.error("\(path): status \(response.status)") } }
                        } catch {
                            totals.withLock { $0.error("\(path): \(error)") }
                        }
                    }
                }
            }
        }
        let elapsed = nowNanos() - begin
        totals.withLock {
            $0.images += 1
            $0.imageLatency.record(elapsed / 1000)
        }
    }

    /// The config and layer digests of an image manifest.
    static func blobDigests(manifest: ByteBuffer) throws -> [String] {
        let data = Data(manifest.readableBytesView)
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw LoadGenError.http("manifest is not a JSON object")
        }
        var digests: [String] = []
        if let config = object["config"] as? [String: Any], let digest = config["digest"] as? String { digests.append(digest) }
        for layer in object["layers"] as? [[String: Any]] ?? [] {
            if let digest = layer["digest"] as? String { digests.append(digest) }
        }
        if digests.isEmpty { throw LoadGenError.http("manifest lists no blobs (an index?)") }
        return digests
    }
}

/// Prints a free loopback TCP port (bound to port 0, then released).
struct FreePortCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "free-port", abstract: "Print N free loopback TCP ports.")

    @Argument var count: Int = 1

    func run() throws {
        var sockets: [Int32] = []
        defer { for s in sockets { close(s) } }
        var ports: [String] = []
        for _ in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw LoadGenError.usage("socket() failed") }
            sockets.append(fd)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = 0
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else { throw LoadGenError.usage("bind() failed") }
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            ports.append(String(UInt16(bigEndian: address.sin_port)))
        }
        print(ports.joined(separator: " "))
    }
}
