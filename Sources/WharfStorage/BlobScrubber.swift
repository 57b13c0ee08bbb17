#if canImport(Glibc)
import Glibc
#endif
import OCIDistribution

/// Re-hashes cached blob files and removes the ones that no longer match their digest (`wharf verify`).
public struct BlobScrubber: Sendable {
    /// What a check found.
    public enum Verdict: Sendable, Equatable {
        case intact
        case missing
        case wrongSize(Int64)
        case corrupt(actualHex: String)
        /// Not SHA-256: this build cannot re-hash it (fills only ever cache SHA-256 blobs).
        case unsupported
    }

    public let index: CacheIndex
    public let store: BlobStore
    static let chunk = 1 << 20

    public init(index: CacheIndex, store: BlobStore) {
        self.index = index
        self.store = store
    }

    /// Hashes the file of `digest` and compares it with the digest and the recorded size.
    /// `progress` is called with the number of bytes hashed after each chunk.
    public func check(_ digest: Digest, record: BlobRecord, progress: (Int) -> Void = { _ in }) -> Verdict {
        guard digest.algorithm == .sha256 else { return .unsupported }
        let fd = open(self.store.layout.blobPath(digest), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .missing }
        defer { close(fd) }
        var hasher = StreamingSHA256()
        var total: Int64 = 0
        var buffer = [UInt8](repeating: 0, count: Self.chunk)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            total += Int64(n)
            progress(n)
        }
        if total != record.size { return .wrongSize(total) }
        let actual = hasher.finalize()
        return actual == digest.hex ? .intact : .corrupt(actualHex: actual)
    }

    /// Removes a bad blob: its index entry first, then its file.
    public func remove(_ digest: Digest) throws {
        try self.index.removeBlob(digest)
        self.store.remove(digest)
    }
}
