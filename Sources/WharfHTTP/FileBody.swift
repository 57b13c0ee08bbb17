#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

extension ResponseWriter {
    /// Writes bytes `[start, end)` of `fd` as one `FileRegion` body part and takes ownership of `fd`.
    ///
    /// Plain HTTP sends it with sendfile (zero-copy); on TLS ``FileRegionReader`` reads it out in
    /// chunks below the encoder. ``FileRegionCloser`` closes the file once written.
    func writeFileBody(fd: Int32, from start: Int64, to end: Int64) async throws {
        let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: fd)
        self.files.track(handle)
        let region = FileRegion(fileHandle: handle, readerIndex: Int(start), endIndex: Int(end))
        do {
            try await self.writeBody(.fileRegion(region))
        } catch {
            try? handle.close()  // no-op if FileRegionCloser already closed it
            throw error
        }
    }
}
