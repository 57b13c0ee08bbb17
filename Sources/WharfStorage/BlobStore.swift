#if canImport(Glibc)
import Glibc
#endif
import OCIDistribution

/// Content-addressed blob files: temp files for fills, atomic publish, open for serving.
public struct BlobStore: Sendable {
    public let layout: CacheLayout
    /// Asked by each ``BlobIngest`` commit whether the blob is kept; nil keeps everything.
    public let budget: CacheBudget?
    /// Every unlink or replacement of a published file, for caches of open descriptors (``OpenBlobFiles``).
    public let changes = BlobFileChanges()
    /// Space promised to fills whose temp file is not allocated yet (see ``DiskReservations``).
    public let reservations: DiskReservations

    /// `reservations` defaults to promises against the free space of the folder's file system.
    public init(layout: CacheLayout, budget: CacheBudget? = nil, reservations: DiskReservations? = nil) {
        self.layout = layout
        self.budget = budget
        let folder = layout.tempDirectory
        self.reservations = reservations ?? DiskReservations(freeBytes: { DiskReservations.freeBytes(at: folder) })
    }

    /// A new, exclusive temp file in `tmp/`, opened read-write. The caller owns the descriptor.
    public func createTempFile(for digest: Digest) throws -> (fd: Int32, path: String) {
        for _ in 0..<8 {
            let path = "\(self.layout.tempDirectory)/\(digest.hex.prefix(16)).\(UInt64.random(in: 0...UInt64.max)).part"
            let fd = Glibc.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
            if fd >= 0 { return (fd, path) }
            if errno != EEXIST { throw FileSystemCalls.Failure(call: "open", path: path, errno: errno) }
        }
        throw FileSystemCalls.Failure(call: "open", path: self.layout.tempDirectory, errno: EEXIST)
    }

    /// Allocates `size` bytes for a temp file before its first byte is written, so a full disk is
    /// found before a client is sent a response head, not in the middle of the body. Throws on
    /// `ENOSPC`/`EDQUOT`; a file system without `fallocate` is not an error (the write may still fail).
    public func reserve(_ fd: Int32, size: Int64, path: String) throws {
        guard size > 0 else { return }
        let rc = posix_fallocate(fd, 0, off_t(size))
        if rc == ENOSPC || rc == EDQUOT || rc == EFBIG { throw FileSystemCalls.Failure(call: "fallocate", path: path, errno: rc) }
    }

    /// fsync the data, rename the temp file to its final place, fsync the folder. Asks no budget and
    /// indexes nothing: blobs enter the cache through ``BlobIngest``, which calls this.
    public func publish(tempPath: String, fd: Int32, as digest: Digest) throws {
        guard fsync(fd) == 0 else { throw FileSystemCalls.Failure(call: "fsync", path: tempPath, errno: errno) }
        let final = self.layout.blobPath(digest)
        try FileSystemCalls.makeParents(of: final, below: self.layout.root)
        guard rename(tempPath, final) == 0 else { throw FileSystemCalls.Failure(call: "rename", path: final, errno: errno) }
        self.changes.record(digest)
        FileSystemCalls.fsyncDirectory(String(final[..<final.lastIndex(of: "/")!]))
    }

    /// Opens a published blob for reading; returns nil if the file is missing.
    public func open(_ digest: Digest) -> (fd: Int32, size: Int64)? {
        let fd = Glibc.open(self.layout.blobPath(digest), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0 else { close(fd); return nil }
        return (fd, Int64(st.st_size))
    }

    /// Unlinks a published blob file; true if there was one.
    @discardableResult
    public func remove(_ digest: Digest) -> Bool {
        defer { self.changes.record(digest) }
        return unlink(self.layout.blobPath(digest)) == 0
    }

    /// Startup reconcile, step one: anything in `tmp/` is an unfinished fill from a previous run.
    @discardableResult
    public func removeLeftoverTempFiles() -> Int {
        FileSystemCalls.emptyDirectory(self.layout.tempDirectory)
    }
}
