#if canImport(Glibc)
import Glibc
#endif
import OCIDistribution

/// One blob entering the cache, as one transaction: ``begin(_:store:index:expectedSize:hashing:)``
/// (a temp file under `tmp/`), ``append(_:)`` (hashed and written), ``verify(computedHex:)``, then
/// ``commit(link:computedHex:)`` (fsync, rename into `blobs/`, index commit, after the budget's
/// decision) or ``abort()``. Used by fills, `wharf import` and anything else that writes blobs.
///
/// Synchronous: appends and commits make blocking system calls. Async callers run ``commit`` (fsync,
/// rename, the LMDB write) on NIO's thread pool, never on the cooperative pool.
///
/// The ingest owns its descriptor and closes it in ``commit`` and ``abort``; a caller that must read
/// the file beyond that (a fill's followers) keeps a `dup` of ``descriptor``, which stays valid after
/// the rename (or unlink).
public struct BlobIngest: Sendable {
    /// Who hashes the bytes.
    public enum Hashing: Sendable {
        /// ``append(_:)`` hashes each chunk as it writes it.
        case inline
        /// The caller hashes (e.g. beside the download, on another thread) and passes the hex digest
        /// to ``verify(computedHex:)`` or ``commit(link:computedHex:)``.
        case byCaller
    }

    /// What a commit did with a verified blob.
    public enum Outcome: Sendable, Equatable {
        /// Renamed into `blobs/` and recorded in the index.
        case cached(BlobRecord)
        /// Verified but not kept (its link is still recorded): the temp file is unlinked.
        case declined(DeclineReason)
    }

    /// Why the budget did not keep a verified blob.
    public enum DeclineReason: Sendable, Equatable {
        /// Keeping a blob larger than the high watermark would evict everything older, then the blob itself.
        case largerThanHighWatermark(size: Int64, highWatermark: Int64)
    }

    /// Why an ingest could not go on or be committed. Nothing was published.
    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// More bytes than `expectedSize` were appended.
        case exceedsExpectedSize(expected: Int64)
        /// Fewer or more bytes than `expectedSize` at verification.
        case sizeMismatch(expected: Int64, actual: Int64)
        /// The bytes hash to `actualHex`, not to the blob's digest.
        case digestMismatch(actualHex: String)
        /// A system call failed.
        case system(call: String, path: String, errno: Int32)

        public var description: String {
            switch self {
            case .exceedsExpectedSize(let expected): "more than the expected \(expected) bytes"
            case .sizeMismatch(let expected, let actual): "\(actual) of \(expected) bytes"
            case .digestMismatch(let actual): "content hashes to sha256:\(actual)"
            case .system(let call, let path, let errno): "\(call) \(path): \(String(cString: strerror(errno)))"
            }
        }
    }

    public let digest: Digest
    /// The temp file, open read-write.
    public let descriptor: Int32
    public let tempPath: String
    /// The size the blob must have, when known (see ``expect(size:)``).
    public private(set) var expectedSize: Int64?
    /// Bytes appended so far.
    public private(set) var written: Int64 = 0
    private var hasher: StreamingSHA256?
    /// Set by a successful ``verify(computedHex:)``.
    private var verified = false
    private let store: BlobStore
    private let index: CacheIndex
    /// The space promised to fills on this ingest's file system (its store's ``BlobStore/reservations``).
    public var reservations: DiskReservations { self.store.reservations }

    /// Creates the temp file and, when the size is known, allocates it (so a full disk is found now,
    /// not in the middle of a body). On failure nothing is left behind.
    public static func begin(
        _ digest: Digest, store: BlobStore, index: CacheIndex, expectedSize: Int64? = nil, hashing: Hashing = .inline
    ) throws(Failure) -> BlobIngest {
        let temp: (fd: Int32, path: String)
        do { temp = try store.createTempFile(for: digest) } catch { throw Failure(error) }
        var ingest = BlobIngest(digest: digest, temp: temp, hashing: hashing, store: store, index: index)
        if let expectedSize {
            do { try ingest.expect(size: expectedSize) } catch {
                ingest.abort()
                throw error
            }
        }
        return ingest
    }

    /// Sets the size the blob must have (once it is known, e.g. from a response head) and allocates
    /// it on disk: throws on `ENOSPC`/`EDQUOT`, before anything is appended.
    public mutating func expect(size: Int64) throws(Failure) {
        self.expectedSize = size
        do { try self.store.reserve(self.descriptor, size: size, path: self.tempPath) } catch { throw Failure(error) }
    }

    private init(digest: Digest, temp: (fd: Int32, path: String), hashing: Hashing, store: BlobStore, index: CacheIndex) {
        self.digest = digest
        self.descriptor = temp.fd
        self.tempPath = temp.path
        self.hasher = hashing == .inline ? StreamingSHA256() : nil
        self.store = store
        self.index = index
    }

    /// Writes `bytes` at the end of the file (all of them: partial writes and `EINTR` are retried)
    /// and hashes them if the ingest hashes inline. Throws, before writing, if they would exceed the
    /// expected size.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) throws(Failure) {
        guard !bytes.isEmpty else { return }
        if let expectedSize, self.written + Int64(bytes.count) > expectedSize { throw .exceedsExpectedSize(expected: expectedSize) }
        var done = 0
        while done < bytes.count {
            let n = pwrite(self.descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(self.written) + off_t(done))
            if n > 0 {
                done += n
            } else if n < 0, errno == EINTR {
                continue
            } else {
                throw .system(call: "pwrite", path: self.tempPath, errno: n < 0 ? errno : ENOSPC)
            }
        }
        self.hasher?.update(bytes)
        self.written += Int64(bytes.count)
    }

    /// Checks the size (if one was expected) and the digest: `computedHex` is the caller's hash of
    /// everything appended (required with ``Hashing/byCaller``, ignored otherwise). Idempotent once it succeeded.
    public mutating func verify(computedHex: String? = nil) throws(Failure) {
        guard !self.verified else { return }
        if let expectedSize, self.written != expectedSize { throw .sizeMismatch(expected: expectedSize, actual: self.written) }
        let actual: String
        if var hasher = self.hasher {
            actual = hasher.finalize()
            self.hasher = hasher
        } else {
            precondition(computedHex != nil, "an ingest hashed by its caller needs the caller's digest")
            actual = computedHex!
        }
        guard actual == self.digest.hex else { throw .digestMismatch(actualHex: actual) }
        self.verified = true
    }

    /// Verifies (unless already verified), then asks the budget whether the blob is kept. Kept: the
    /// data is fsynced, the file renamed into `blobs/`, its folder fsynced, and the blob (with its
    /// `link`, if any) recorded in the index. Declined: the temp file is unlinked and only the link is
    /// recorded. Either way the descriptor is closed. On a throw nothing was indexed and the temp
    /// file is gone.
    public consuming func commit(link: (upstream: String, repository: String)?, computedHex: String? = nil) throws -> Outcome {
        defer { close(self.descriptor) }
        do {
            try self.verify(computedHex: computedHex)
            if let budget = self.store.budget, let reason = budget.admit(self.digest, size: self.written) {
                unlink(self.tempPath)
                if let link { try self.index.link([self.digest], upstream: link.upstream, repository: link.repository) }
                return .declined(reason)
            }
            do {
                try self.store.publish(tempPath: self.tempPath, fd: self.descriptor, as: self.digest)
            } catch {
                self.store.budget?.withdraw(self.digest)
                throw error
            }
            do {
                return .cached(try self.index.commitBlob(self.digest, size: self.written, link: link))
            } catch {
                self.store.budget?.withdraw(self.digest)  // the file stays unindexed: the startup reconcile sees it
                throw error
            }
        } catch {
            unlink(self.tempPath)
            throw error
        }
    }

    /// Gives up: unlinks the temp file and closes the descriptor. Nothing is published.
    public consuming func abort() {
        unlink(self.tempPath)
        close(self.descriptor)
    }
}

extension BlobIngest.Failure {
    init(_ error: any Error) {
        if let f = error as? FileSystemCalls.Failure {
            self = .system(call: f.call, path: f.path, errno: f.errno)
        } else {
            self = .system(call: "\(error)", path: "", errno: EIO)
        }
    }
}
