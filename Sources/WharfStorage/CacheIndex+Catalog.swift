import LMDB
import OCIDistribution

/// Walks over the cached tags, for the cache browser.
extension CacheIndex {
    /// One cached tag answer: a tag of a repository at an upstream, for one accept class.
    public struct TagEntry: Sendable, Hashable {
        public let upstream: String
        public let repository: String
        public let tag: String
        public let acceptClass: String
        public let record: TagRecord
        /// Its key in the index: a cursor for ``CacheIndex/tagEntries(after:limit:scanLimit:matching:)``.
        public let key: [UInt8]
    }

    /// Up to `limit` tag entries in key order (upstream, repository, tag, accept class), starting after
    /// the entry `after`, reading at most `scanLimit` keys; `matching` filters them. Returns the entries
    /// and the last key read (pass it back as `after` to go on; nil at the end). One short read
    /// transaction per call. Entries whose names were too long to keep (hashed keys) are skipped.
    public func tagEntries(
        after: [UInt8]?, limit: Int, scanLimit: Int = 100_000, matching: (TagEntry) -> Bool = { _ in true }
    ) throws -> (entries: [TagEntry], next: [UInt8]?) {
        try self.environment.read { txn in
            var out: [TagEntry] = []
            var scanned = 0
            var last: [UInt8]?
            var finished = true
            try txn.forEach(self.tags, from: after) { k, v in
                if let after, k.elementsEqual(after) { return true }
                scanned += 1
                last = Array(k)
                if let entry = Self.tagEntry(key: k, value: v), matching(entry) { out.append(entry) }
                if out.count >= limit || scanned >= scanLimit {
                    finished = false
                    return false
                }
                return true
            }
            return (out, finished ? nil : last)
        }
    }

    static func tagEntry(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> TagEntry? {
        guard key.first != UInt8(ascii: "#"), let record = TagRecord(decoding: value) else { return nil }
        let parts = key.split(separator: 0, omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        let text = parts.map { String(decoding: $0, as: UTF8.self) }
        return TagEntry(upstream: text[0], repository: text[1], tag: text[2], acceptClass: text[3], record: record, key: Array(key))
    }
}
