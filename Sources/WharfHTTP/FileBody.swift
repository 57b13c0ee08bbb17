#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

extension ResponseWriter {
    /// Bytes read per `pread` when a file cannot go out with sendfile (TLS connections).
    static let fileChunkSize = 256 * 1024

    /// Writes bytes `[start, end)` of `fd` as body parts and takes ownership of `fd`.
    ///
    /// Plain HTTP: one `FileRegion`, sent with sendfile (zero-copy); ``FileRegionCloser`` closes it.
    /// TLS: the bytes must pass through the encryptor, so they are read in chunks with `pread` on
    /// NIO's blocking-I/O pool and written as buffers, one chunk in flight at a time (bounded memory).
    func writeFileBody(fd: Int32, from start: Int64, to end: Int64) async throws {
        guard self.isSecure else {
            let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: fd)
            self.files.track(handle)
            let region = FileRegion(fileHandle: handle, readerIndex: Int(start), endIndex: Int(end))
            do {
                try await self.writeBody(.fileRegion(region))
            } catch {
                try? handle.close()  // no-op if FileRegionCloser already closed it
                throw error
            }
            return
        }
        defer { close(fd) }
        let allocator = self.allocator
        var offset = start
        while offset < end {
            let want = Int(min(Int64(Self.fileChunkSize), end - offset))
            let at = offset
            let chunk = try await NIOThreadPool.singleton.runIfActive { () throws -> ByteBuffer in
                var buffer = allocator.buffer(capacity: want)
                let got = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: want) { raw -> Int in
                    let n = pread(fd, raw.baseAddress, want, off_t(at))
                    guard n > 0 else { throw AbortResponse(reason: n == 0 ? "file ended early" : "read failed (errno \(errno))") }
                    return n
                }
                _ = got
                return buffer
            }
            offset += Int64(chunk.readableBytes)
            try await self.writeBody(.byteBuffer(chunk))
        }
    }
}
