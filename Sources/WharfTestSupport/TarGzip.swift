import CZlib
import Crypto
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes bytes to a new file while computing their SHA-256 and length.
final class HashingFileWriter {
    private let fd: Int32
    private var hasher = SHA256()
    private(set) var count = 0
    let path: String

    init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw FixtureError.system("open \(path)", errno) }
    }

    deinit { close(fd) }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        hasher.update(bufferPointer: bytes)
        count += bytes.count
        var offset = 0
        while offset < bytes.count {
            let written = posixWrite(fd, base + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw FixtureError.system("write \(path)", errno)
            }
            offset += written
        }
    }

    /// The `sha256:<hex>` digest of everything written so far.
    func digest() -> String { "sha256:" + hexString(hasher.finalize()) }
}

/// A streaming gzip compressor (zlib, windowBits 15+16) feeding a ``HashingFileWriter``.
///
/// Memory use is bounded by the fixed output buffer; input is consumed in whatever
/// chunks the caller provides.
final class GzipStream {
    private let stream: UnsafeMutablePointer<z_stream>
    private let output: UnsafeMutableRawBufferPointer
    private let sink: HashingFileWriter
    private var finished = false

    /// - Parameter level: zlib level; `Z_NO_COMPRESSION` (stored blocks) is the fastest,
    ///   and random payloads do not compress anyway.
    init(sink: HashingFileWriter, level: Int32 = Z_NO_COMPRESSION) throws {
        self.sink = sink
        // z_stream keeps a back pointer to itself, so it must never move: heap-allocate it.
        stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        output = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        let rc = deflateInit2_(
            stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
            ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            output.deallocate()
            throw FixtureError.invalid("deflateInit2 failed: \(rc)")
        }
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
        output.deallocate()
    }

    func write(_ input: UnsafeRawBufferPointer) throws {
        guard input.count > 0 else { return }
        try run(input, flush: Z_NO_FLUSH)
    }

    func finish() throws {
        guard !finished else { return }
        finished = true
        try run(UnsafeRawBufferPointer(start: nil, count: 0), flush: Z_FINISH)
    }

    private func run(_ input: UnsafeRawBufferPointer, flush: Int32) throws {
        stream.pointee.next_in = UnsafeMutablePointer(
            mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.pointee.avail_in = uInt(input.count)
        let outBase = output.baseAddress!.assumingMemoryBound(to: Bytef.self)
        while true {
            stream.pointee.next_out = outBase
            stream.pointee.avail_out = uInt(output.count)
            let rc = deflate(stream, flush)
            guard rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR else {
                throw FixtureError.invalid("deflate failed: \(rc)")
            }
            let produced = output.count - Int(stream.pointee.avail_out)
            try sink.write(UnsafeRawBufferPointer(rebasing: output[0..<produced]))
            if flush == Z_FINISH {
                if rc == Z_STREAM_END { return }
            } else if stream.pointee.avail_out != 0 {
                return
            }
        }
    }
}

/// Builds a ustar archive holding one regular file and streams it through gzip.
enum TarGzip {
    static let blockSize = 512

    /// A 512-byte ustar header for a regular file.
    static func header(name: String, size: Int, mtime: Int = 1_704_067_200) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: blockSize)
        func put(_ string: String, at offset: Int, width: Int) {
            let bytes = Array(string.utf8.prefix(width))
            block.replaceSubrange(offset..<offset + bytes.count, with: bytes)
        }
        /// Octal, zero padded to width-1 digits, NUL terminated.
        func octal(_ value: Int, at offset: Int, width: Int) {
            let digits = String(value, radix: 8)
            let padded = String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits
            put(padded, at: offset, width: width - 1)
        }
        put(name, at: 0, width: 100)
        octal(0o644, at: 100, width: 8)  // mode
        octal(0, at: 108, width: 8)  // uid
        octal(0, at: 116, width: 8)  // gid
        octal(size, at: 124, width: 12)  // size (11 octal digits: up to 8 GiB)
        octal(mtime, at: 136, width: 12)  // mtime
        block.replaceSubrange(148..<156, with: [UInt8](repeating: 0x20, count: 8))  // checksum placeholder
        block[156] = UInt8(ascii: "0")  // typeflag: regular file
        put("ustar\0", at: 257, width: 6)  // magic
        put("00", at: 263, width: 2)  // version
        put("root", at: 265, width: 32)  // uname
        put("root", at: 297, width: 32)  // gname
        let checksum = block.reduce(0) { $0 + Int($1) }
        let digits = String(checksum, radix: 8)
        let field = String(repeating: "0", count: max(0, 6 - digits.count)) + digits
        block.replaceSubrange(148..<156, with: Array(field.utf8) + [0, 0x20])
        return block
    }

    /// Writes `<path>` = gzip(tar(one file named `fileName` with `payloadSize` bytes from `fill`)).
    ///
    /// - Parameter fill: fills the given buffer with the next payload bytes.
    /// - Returns: the compressed digest and size, and the digest of the uncompressed tar.
    static func writeLayer(
        path: String,
        fileName: String,
        payloadSize: Int,
        fill: (UnsafeMutableRawBufferPointer) -> Void
    ) throws -> (digest: String, size: Int, diffID: String) {
        let file = try HashingFileWriter(path: path)
        let gzip = try GzipStream(sink: file)
        var tarHasher = SHA256()
        func emit(_ bytes: UnsafeRawBufferPointer) throws {
            tarHasher.update(bufferPointer: bytes)
            try gzip.write(bytes)
        }

        try header(name: fileName, size: payloadSize).withUnsafeBytes { try emit($0) }

        let chunkSize = 1 << 20
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { chunk.deallocate() }
        var remaining = payloadSize
        while remaining > 0 {
            let n = min(chunkSize, remaining)
            let slice = UnsafeMutableRawBufferPointer(rebasing: chunk[0..<n])
            fill(slice)
            try emit(UnsafeRawBufferPointer(slice))
            remaining -= n
        }

        // Pad the file to a block boundary, then two zero blocks end the archive.
        let padding = (blockSize - payloadSize % blockSize) % blockSize
        let trailer = [UInt8](repeating: 0, count: padding + 2 * blockSize)
        try trailer.withUnsafeBytes { try emit($0) }
        try gzip.finish()
        return (file.digest(), file.count, "sha256:" + hexString(tarHasher.finalize()))
    }
}

private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, buffer, count)
    #elseif canImport(Musl)
    return Musl.write(fd, buffer, count)
    #else
    return Darwin.write(fd, buffer, count)
    #endif
}

/// Lower-case hex of a digest or any byte sequence.
func hexString<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
    let table = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(64)
    for byte in bytes {
        out.append(table[Int(byte >> 4)])
        out.append(table[Int(byte & 0x0f)])
    }
    return String(decoding: out, as: UTF8.self)
}

func hexString(_ digest: SHA256Digest) -> String {
    digest.withUnsafeBytes { hexString($0) }
}
