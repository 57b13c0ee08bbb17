import LMDB
import OCIDistribution

/// The GET hit's lookup in one B-tree descent: a confirmed link written since this format carries
/// the blob's size (`[1, size as 8 little-endian bytes]`), so a hit reads the `links` database only.
///
/// Older confirmed links hold `[1]` alone and are answered with the blob record as well (two
/// lookups, as before); every reader that only asks "confirmed?" reads the first byte and sees no
/// difference. Links are not removed with their blob's record (eviction, the index ↔ disk check),
/// so a size from a link says what the file must be, not that it is there: the caller opens the
/// file and compares its size, as the GET hit path does with every file anyway.
extension CacheIndex {
    /// The value of a confirmed link to a blob of `size` bytes.
    static func confirmedLink(size: Int64) -> [UInt8] {
        var value = Self.confirmedLink
        withUnsafeBytes(of: UInt64(size).littleEndian) { value.append(contentsOf: $0) }
        return value
    }

    /// The size of `digest` if it is confirmed in `repository`: from the link alone when it carries
    /// the size, else from the blob record (nil when that is gone too). Nil when not confirmed there.
    public func confirmedBlobSize(_ digest: Digest, linkedTo upstream: String, repository: String) throws -> Int64? {
        let link = Self.linkKey(upstream, repository, digest)
        return try self.environment.read { txn in
            let fromLink: Int64?? = try txn.withValue(self.links, link) { value -> Int64? in
                guard value.first == 1 else { return nil }  // named by a manifest only
                guard value.count == 9 else { return -1 }  // confirmed, written before sizes: ask the record
                var size: UInt64 = 0
                withUnsafeMutableBytes(of: &size) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: value[1..<9])) }
                return Int64(UInt64(littleEndian: size))
            }
            guard let confirmed = fromLink ?? nil else { return nil }
            if confirmed >= 0 { return confirmed }
            return try txn.withValue(self.blobs, Self.key(digest)) { BlobRecord(decoding: $0)?.size } ?? nil
        }
    }
}
