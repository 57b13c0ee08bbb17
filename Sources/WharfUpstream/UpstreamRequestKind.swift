/// The kinds of upstream request that fail independently: each has its own circuit breaker, and the
/// HTTP client pool a request uses follows from its kind and method.
public enum UpstreamRequestKind: String, Sendable, Codable, CaseIterable {
    /// `/v2/<repo>/manifests/<reference>` (GET and HEAD).
    case manifest
    /// `/v2/<repo>/blobs/<digest>`, including the redirect to a storage host.
    case blob
    /// A token fetch at the challenge's realm.
    case token
    /// Everything else: `/v2/`, `tags/list`, referrers.
    case other

    /// The kind of `/v2/<repo>/<path>`.
    init(path: String) {
        if path.hasPrefix("manifests/") {
            self = .manifest
        } else if path.hasPrefix("blobs/") {
            self = .blob
        } else {
            self = .other
        }
    }
}

/// Which request a health event is about: its kind, repository and reference. Two requests with the
/// same key are "the same request" to the circuit breaker, however many clients send it.
public struct UpstreamRequestKey: Sendable, Hashable {
    public let kind: UpstreamRequestKind
    /// The repository, when the request concerns one.
    public let repository: String?
    /// The rest of the request: tag or digest, `tags/list`, or a token scope.
    public let reference: String

    public init(kind: UpstreamRequestKind, repository: String?, reference: String) {
        self.kind = kind
        self.repository = repository
        self.reference = reference
    }

    /// The key of `/v2/<repository>/<path>`.
    init(repository: String, path: String) {
        let kind = UpstreamRequestKind(path: path)
        let reference: Substring
        switch kind {
        case .manifest: reference = path.dropFirst("manifests/".count)
        case .blob: reference = path.dropFirst("blobs/".count)
        case .token, .other: reference = Substring(path)
        }
        self.init(kind: kind, repository: repository, reference: String(reference))
    }

    /// What the breaker compares to tell requests apart.
    var breakerKey: String { (self.repository ?? "") + "\u{0}" + self.reference }
}
