#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

extension ByteBuffer {
    /// Appends `count` bytes of `fd` read with `pread` from `offset`; false if the file had fewer
    /// (what was read stays appended).
    mutating func writeFile(_ fd: Int32, at offset: Int64, count: Int) -> Bool {
        var done = 0
        while done < count {
            let n = self.writeWithUnsafeMutableBytes(minimumWritableBytes: count - done) { raw in
                let r = pread(fd, raw.baseAddress!, count - done, off_t(offset) + off_t(done))
                return r > 0 ? r : 0
            }
            if n == 0 { return false }
            done += n
        }
        return true
    }
}

extension ResponseWriter {
    /// Writes bytes `[start, end)` of `fd` as one `FileRegion` body part and takes ownership of `fd`.
    ///
    /// Plain HTTP sends it with sendfile (zero-copy); on TLS ``FileRegionReader`` reads it out in
    /// chunks below the encoder. ``ConnectionLifecycle`` closes the file once written.
    func writeFileBody(fd: Int32, from start: Int64, to end: Int64) async throws {
        let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: fd)
        let region = FileRegion(fileHandle: handle, readerIndex: Int(start), endIndex: Int(end))
        do {
            try await self.writeBody(.fileRegion(region))
        } catch {
            try? handle.close()  // no-op if it was already closed
            throw error
        }
    }
}
