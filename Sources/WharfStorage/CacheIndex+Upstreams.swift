import LMDB

/// The names of the upstreams the folder was last served with, kept in the `meta` database.
///
/// The index stores tags and links under an upstream's name, so content filed under a name the
/// server does not have is invisible to it. `wharf serve` records its names at start; `wharf import`
/// refuses a name the folder's server does not know.
extension CacheIndex {
    static let upstreamsKey = Array("upstream-names".utf8)

    /// Records `names` as the folder's upstreams, replacing what an earlier start recorded. A restart
    /// with the same names writes nothing: the start path then opens no write transaction at all.
    public func recordUpstreamNames(_ names: [String]) throws {
        let value = Array(names.joined(separator: "\n").utf8)
        let recorded = try self.environment.read { txn in try txn.get(self.meta, Self.upstreamsKey) }
        guard recorded != value else { return }
        try self.environment.write { txn in
            let current = try txn.get(self.meta, Self.upstreamsKey)
            if current != value { try txn.put(self.meta, Self.upstreamsKey, value) }
        }
    }

    /// The upstream names the last `wharf serve` of this folder recorded, or nil if none has.
    public func recordedUpstreamNames() throws -> [String]? {
        try self.environment.read { txn in
            try txn.withValue(self.meta, Self.upstreamsKey) { raw in
                String(decoding: raw, as: UTF8.self).split(separator: "\n").map(String.init)
            }
        }
    }
}
