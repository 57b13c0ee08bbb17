#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import OCIDistribution

/// An HTTP/1.1 response head serialized by hand into a `ByteBuffer`, for the hit path.
///
/// Only values the cache controls go in (digests, sizes, validated media types and namespaces);
/// ``isSafeValue(_:)`` guards those that came from outside.
struct HitResponseHead {
    private(set) var buffer: ByteBuffer

    init(status: StaticString, allocator: ByteBufferAllocator, bodyCapacity: Int = 0) {
        self.buffer = allocator.buffer(capacity: 384 + bodyCapacity)
        self.buffer.writeStaticString("HTTP/1.1 ")
        self.buffer.writeStaticString(status)
        self.buffer.writeStaticString("\r\nDocker-Distribution-API-Version: registry/2.0\r\n")
    }

    mutating func add(_ name: StaticString, _ value: String) {
        self.buffer.writeStaticString(name)
        self.buffer.writeStaticString(": ")
        self.buffer.writeString(value)
        self.buffer.writeStaticString("\r\n")
    }

    mutating func add(_ name: StaticString, constant value: StaticString) {
        self.buffer.writeStaticString(name)
        self.buffer.writeStaticString(": ")
        self.buffer.writeStaticString(value)
        self.buffer.writeStaticString("\r\n")
    }

    /// `name: algorithm:hex` (quoted for an ETag), written without building the digest's text.
    mutating func add(_ name: StaticString, _ digest: Digest, quoted: Bool = false) {
        self.buffer.writeStaticString(name)
        self.buffer.writeStaticString(quoted ? ": \"" : ": ")
        self.buffer.writeString(digest.algorithm.rawValue)
        self.buffer.writeStaticString(":")
        self.buffer.writeString(digest.hex)
        self.buffer.writeStaticString(quoted ? "\"\r\n" : "\r\n")
    }

    mutating func add(_ name: StaticString, _ value: Int64) {
        self.buffer.writeStaticString(name)
        self.buffer.writeStaticString(": ")
        self.writeDecimal(value)
        self.buffer.writeStaticString("\r\n")
    }

    /// Ends the head (with `Connection: close` unless the connection stays open).
    mutating func finish(keepAlive: Bool) {
        if !keepAlive { self.buffer.writeStaticString("Connection: close\r\n") }
        self.buffer.writeStaticString("\r\n")
    }

    /// Appends `count` bytes of `fd` read from offset 0; false if the file had fewer.
    mutating func appendFile(_ fd: Int32, count: Int) -> Bool { self.buffer.writeFile(fd, at: 0, count: count) }

    /// Also appends an in-memory body.
    mutating func append(_ bytes: [UInt8]) { self.buffer.writeBytes(bytes) }

    private mutating func writeDecimal(_ value: Int64) {
        var v = UInt64(max(0, value))
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var i = digits.count
            repeat {
                i -= 1
                digits[i] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            } while v > 0
            self.buffer.writeBytes(UnsafeBufferPointer(rebasing: digits[i...]))
        }
    }

    /// A header value that cannot break the head: visible ASCII and spaces only.
    static func isSafeValue(_ value: String) -> Bool {
        value.utf8.allSatisfy { ($0 >= 0x20 && $0 < 0x7F) || $0 == 0x09 }
    }
}
