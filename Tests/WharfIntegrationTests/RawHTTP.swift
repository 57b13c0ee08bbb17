import NIOHTTP1
import OCIDistribution
import Synchronization
import WharfMirror
import WharfStorage
import WharfUpstream
import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// A blocking raw-socket HTTP client for hostile requests no well-behaved client would send.
enum RawHTTP {
    struct Response {
        let status: Int
        let headers: [(String, String)]
        let body: [UInt8]
        let raw: [UInt8]
        var bodyText: String { String(decoding: self.body, as: UTF8.self) }
        var declaredLength: Int? { self.header("content-length").flatMap { Int($0) } }
        func header(_ name: String) -> String? { self.headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    }

    /// Sends `request` verbatim and reads until the server closes, `maxBytes` arrive, or 20 s pass.
    /// The blocking socket work runs on its own thread, never on the (2-thread) cooperative pool.
    /// `untilClose`: keep reading past the first response (pipelined requests) until the server closes.
    /// `source`: the loopback address to connect from (another 127.x address is another client).
    static func request(_ request: String, port: Int, maxBytes: Int = 64 << 20, untilClose: Bool = false, source: String? = nil) async throws -> Response {
        let bytes = Array(request.utf8)
        return try await Self.onOwnThread {
            try Self.blockingRequest(bytes, port: port, maxBytes: maxBytes, untilClose: untilClose, source: source)
        }
    }

    /// Runs blocking socket work on a thread of its own, never on the (2-thread) cooperative pool.
    static func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in
            Thread.detachNewThread { c.resume(with: Result { try work() }) }
        }
    }

    /// A blocking loopback TCP socket connected to `port`, with a 20 s receive timeout. Options that must
    /// come before `connect` (a small receive buffer, the `source` address) are set first. The caller closes it.
    static func connect(port: Int, receiveBuffer: Int32? = nil, noDelay: Bool = false, source: String? = nil) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        if var size = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        if noDelay {
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard bound == 0 else {
                close(fd)
                throw POSIXError(.EADDRNOTAVAIL)
            }
        }
        var tv = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else {
            close(fd)
            throw POSIXError(.ECONNREFUSED)
        }
        return fd
    }

    static func blockingRequest(_ bytes: [UInt8], port: Int, maxBytes: Int, untilClose: Bool = false, source: String? = nil) throws -> Response {
        let fd = try Self.connect(port: port, source: source)
        defer { close(fd) }
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sent += n
        }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while received.count < maxBytes {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received.append(contentsOf: chunk[0..<n])
            if !untilClose, let r = parse(received), let len = r.declaredLength, r.body.count >= len, r.header("connection")?.lowercased() != "close" { break }
        }
        return parse(received) ?? Response(status: 0, headers: [], body: [], raw: received)
    }

    static func parse(_ data: [UInt8]) -> Response? {
        guard let end = data.firstRange(of: [13, 10, 13, 10]) else { return nil }
        let headText = String(decoding: data[..<end.lowerBound], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { return nil }
        let headers = lines.compactMap { l -> (String, String)? in
            guard let c = l.firstIndex(of: ":") else { return nil }
            return (String(l[..<c]), l[l.index(after: c)...].trimmingCharacters(in: .whitespaces))
        }
        return Response(status: status, headers: headers, body: Array(data[end.upperBound...]), raw: data)
    }
}
