import OCIDistribution

/// Whose credentials an upstream request carries.
///
/// `.mirror` uses the upstream's configured credentials (or none). `.client` carries a client's own
/// credentials (pass-through authentication; nil = that client is anonymous). Tokens are cached per
/// identity, so one client's token is never used for another.
public enum UpstreamIdentity: Sendable, Hashable {
    case mirror
    case client(UpstreamCredentials?)

    /// A stable key for caches: never the password itself.
    public var cacheKey: String {
        switch self {
        case .mirror: return "mirror"
        case .client(nil): return "client:anonymous"
        case .client(let c?):
            return "client:" + Digest.sha256(of: Array("\(c.username)\u{0}\(c.password)".utf8)).hex
        }
    }

    public var isAnonymousClient: Bool {
        if case .client(nil) = self { return true }
        return false
    }
}
