import NIOCore
import NIOPosix

/// Monotonic nanoseconds (CLOCK_MONOTONIC through NIO).
@inline(__always)
func nowNanos() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

/// What a connection reports about the response in flight. Called on the channel's event loop.
protocol ResponseDelegate: AnyObject {
    func responseHead(status: UInt, keepAlive: Bool)
    func responseBody(_ buffer: ByteBuffer)
    func responseEnd()
    /// The connection closed (or failed); `midResponse` when a request was in flight.
    func connectionClosed(midResponse: Bool, error: (any Error)?)
}

/// A minimal HTTP/1.1 response parser and the only handler of a client pipeline: it finds the head,
/// reads the status, Content-Length, Transfer-Encoding: chunked and Connection, then counts body
/// bytes without copying them (wrk-style; NIOHTTP1's decoder costs more per small response than the
/// servers under test). One request in flight at a time; responses to GET only. Confined to its loop.
final class ResponseHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    weak var delegate: (any ResponseDelegate)?
    var inFlight = false
    private var reported = false

    private enum State {
        case head
        case body(remaining: Int)
        case untilClose
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd(remaining: Int)
        case trailers
    }
    private var state = State.head
    private static let crlf: [UInt8] = [13, 10]
    private static let crlfcrlf: [UInt8] = [13, 10, 13, 10]
    /// Bytes of an unfinished head, chunk-size line or trailer line.
    private var pending = ByteBuffer()
    private var keepAlive = true

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        do {
            while buffer.readableBytes > 0 {
                if try !step(&buffer) { break }
            }
        } catch {
            report(error: error)
            context.close(promise: nil)
        }
    }

    /// Consumes from `buffer`; false when more bytes are needed.
    private func step(_ buffer: inout ByteBuffer) throws -> Bool {
        switch state {
        case .head:
            guard let head = takeLine(&buffer, terminator: "\r\n\r\n") else { return false }
            try parseHead(head)
            return true
        case .body(let remaining):
            let n = min(remaining, buffer.readableBytes)
            delegate?.responseBody(buffer.readSlice(length: n)!)
            if n == remaining { finish() } else { state = .body(remaining: remaining - n) }
            return true
        case .untilClose:
            delegate?.responseBody(buffer.readSlice(length: buffer.readableBytes)!)
            return true
        case .chunkSize:
            guard let line = takeLine(&buffer, terminator: "\r\n") else { return false }
            let text = String(buffer: line)
            let hex = text.split(separator: ";").first.map { String($0).trimmingSpaces() } ?? ""
            guard let size = Int(hex, radix: 16) else { throw LoadGenError.http("bad chunk size '\(text)'") }
            state = size == 0 ? .trailers : .chunkData(remaining: size)
            return true
        case .chunkData(let remaining):
            let n = min(remaining, buffer.readableBytes)
            delegate?.responseBody(buffer.readSlice(length: n)!)
            state = n == remaining ? .chunkDataEnd(remaining: 2) : .chunkData(remaining: remaining - n)
            return true
        case .chunkDataEnd(let remaining):
            let n = min(remaining, buffer.readableBytes)
            buffer.moveReaderIndex(forwardBy: n)
            state = n == remaining ? .chunkSize : .chunkDataEnd(remaining: remaining - n)
            return true
        case .trailers:
            guard let line = takeLine(&buffer, terminator: "\r\n") else { return false }
            if line.readableBytes == 0 { finish() }
            return true
        }
    }

    /// The text before `terminator` (consumed with it), gathering partial data in `pending`.
    private func takeLine(_ buffer: inout ByteBuffer, terminator: String) -> ByteBuffer? {
        let term: [UInt8] = terminator.utf8.count == 4 ? Self.crlfcrlf : Self.crlf
        if pending.readableBytes == 0 {
            if let end = find(term, in: buffer.readableBytesView) {
                let line = buffer.readSlice(length: end - buffer.readerIndex)!
                buffer.moveReaderIndex(forwardBy: term.count)
                return line
            }
            pending.writeBuffer(&buffer)
            if pending.readableBytes > 1 << 20 { pending.clear() }
            return nil
        }
        // Continue a partial line: search from a little before the old end.
        let searchFrom = max(pending.readerIndex, pending.writerIndex - term.count + 1)
        pending.writeBuffer(&buffer)
        guard let end = find(term, in: pending.readableBytesView[searchFrom...]) else { return nil }
        let line = pending.readSlice(length: end - pending.readerIndex)!
        pending.moveReaderIndex(forwardBy: term.count)
        buffer = pending  // what followed the terminator goes back to the caller
        pending = ByteBuffer()
        return line
    }

    private func find(_ needle: [UInt8], in view: ByteBufferView) -> Int? {
        guard let first = needle.first else { return nil }
        var index = view.startIndex
        let end = view.endIndex
        while index < end {
            guard let hit = view[index...].firstIndex(of: first) else { return nil }
            if hit + needle.count > end { return nil }
            var match = true
            for k in 1..<needle.count where view[hit + k] != needle[k] {
                match = false
                break
            }
            if match { return hit }
            index = hit + 1
        }
        return nil
    }

    /// Status, Content-Length, chunked and keep-alive from a response head, on bytes.
    private func parseHead(_ head: ByteBuffer) throws {
        var status: UInt = 0
        var length: Int?
        var chunked = false
        let ok: Bool = head.withUnsafeReadableBytes { bytes in
            // "HTTP/1.x SSS"
            guard bytes.count >= 12, bytes[0] == UInt8(ascii: "H"), bytes[5] == UInt8(ascii: "1"), bytes[8] == UInt8(ascii: " ") else {
                return false
            }
            for k in 9..<12 {
                let d = bytes[k] &- UInt8(ascii: "0")
                guard d < 10 else { return false }
                status = status * 10 + UInt(d)
            }
            keepAlive = bytes[7] == UInt8(ascii: "1")
            var i = 12
            let n = bytes.count
            @inline(__always) func lower(_ c: UInt8) -> UInt8 { c >= 65 && c <= 90 ? c | 0x20 : c }
            func hasName(_ start: Int, _ name: StaticString) -> Bool {
                let count = name.utf8CodeUnitCount
                guard start + count < n, bytes[start + count] == UInt8(ascii: ":") else { return false }
                let p = name.utf8Start
                for k in 0..<count where lower(bytes[start + k]) != p[k] { return false }
                return true
            }
            while i < n {
                // Start of the next header line.
                while i < n && bytes[i] != 10 { i += 1 }
                i += 1
                guard i < n else { break }
                let lineStart = i
                var lineEnd = i
                while lineEnd < n && bytes[lineEnd] != 13 && bytes[lineEnd] != 10 { lineEnd += 1 }
                /// First byte of the value (lower-cased) and whether the value ends in "chunked".
                func valueStart(_ nameLength: Int) -> Int {
                    var v = lineStart + nameLength + 1
                    while v < lineEnd && (bytes[v] == 32 || bytes[v] == 9) { v += 1 }
                    return v
                }
                switch lower(bytes[lineStart]) {
                case UInt8(ascii: "c"):
                    if hasName(lineStart, "content-length") {
                        var v = lineStart + 15
                        var number = 0
                        while v < lineEnd && (bytes[v] == 32 || bytes[v] == 9) { v += 1 }
                        while v < lineEnd, case let d = bytes[v] &- 48, d < 10 { number = number * 10 + Int(d); v += 1 }
                        length = number
                    } else if hasName(lineStart, "connection") {
                        let v = valueStart(10)
                        if v < lineEnd {
                            if lower(bytes[v]) == UInt8(ascii: "c") { keepAlive = false }
                            if lower(bytes[v]) == UInt8(ascii: "k") { keepAlive = true }
                        }
                    }
                case UInt8(ascii: "t"):
                    if hasName(lineStart, "transfer-encoding") {
                        // The last coding must be "chunked".
                        var e = lineEnd
                        while e > lineStart && (bytes[e - 1] == 32 || bytes[e - 1] == 9) { e -= 1 }
                        let word: StaticString = "chunked"
                        if e - 7 >= valueStart(17) {
                            chunked = (0..<7).allSatisfy { lower(bytes[e - 7 + $0]) == word.utf8Start[$0] }
                        }
                    }
                default:
                    break
                }
                i = lineEnd
            }
            return true
        }
        guard ok else { throw LoadGenError.http("not an HTTP/1.x response: \(String(buffer: head).prefix(80))") }
        delegate?.responseHead(status: status, keepAlive: keepAlive)
        if status == 204 || status == 304 || (100..<200).contains(status) {
            finish()
        } else if chunked {
            state = .chunkSize
        } else if let length {
            if length == 0 { finish() } else { state = .body(remaining: length) }
        } else {
            keepAlive = false
            state = .untilClose
        }
    }

    private func finish() {
        state = .head
        inFlight = false
        delegate?.responseEnd()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .untilClose = state {
            finish()
        }
        report(error: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        report(error: error)
        context.close(promise: nil)
    }

    private func report(error: (any Error)?) {
        guard !reported else { return }
        reported = true
        let mid = inFlight
        inFlight = false
        delegate?.connectionClosed(midResponse: mid, error: error)
    }
}

/// Target of the load: host, port, and the request headers every request carries.
struct Target: Sendable {
    let host: String
    let port: Int
    let hostHeader: String
    let extraHeaders: [(String, String)]

    init(url: String, accept: String?, headers: [String]) throws {
        guard url.hasPrefix("http://") else { throw LoadGenError.usage("only http:// URLs are supported: \(url)") }
        var rest = url.dropFirst("http://".count)
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        let hostPort = String(rest)
        if let colon = hostPort.lastIndex(of: ":"), let port = Int(hostPort[hostPort.index(after: colon)...]) {
            host = String(hostPort[..<colon])
            self.port = port
        } else {
            host = hostPort
            port = 80
        }
        hostHeader = hostPort
        var extra: [(String, String)] = []
        if let accept { extra.append(("Accept", accept)) }
        for header in headers {
            guard let colon = header.firstIndex(of: ":") else { throw LoadGenError.usage("header without ':': \(header)") }
            extra.append((
                String(header[..<colon]).trimmingSpaces(),
                String(header[header.index(after: colon)...]).trimmingSpaces()
            ))
        }
        extraHeaders = extra
    }

    /// The whole request, ready to write.
    func request(path: String, accept: String? = nil) -> ByteBuffer {
        var text = "GET \(path) HTTP/1.1\r\nHost: \(hostHeader)\r\nUser-Agent: wharf-loadgen\r\n"
        for (name, value) in extraHeaders where !(accept != nil && name.lowercased() == "accept") {
            text += "\(name): \(value)\r\n"
        }
        if let accept { text += "Accept: \(accept)\r\n" }
        text += "\r\n"
        return ByteBuffer(string: text)
    }

    /// Connects a keep-alive HTTP/1.1 client channel on `loop` whose responses go to `handler`.
    func connect(on loop: any EventLoop, handler: ResponseHandler) -> EventLoopFuture<any Channel> {
        ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            // Big reads: bodies are counted and dropped, fewer syscalls per byte.
            .channelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 4096, initial: 65536, maximum: 1 << 20))
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: host, port: port)
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}

enum LoadGenError: Error, CustomStringConvertible {
    case usage(String)
    case http(String)

    var description: String {
        switch self {
        case .usage(let m): return m
        case .http(let m): return m
        }
    }
}
