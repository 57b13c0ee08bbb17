import NIOHTTP1
import OCIDistribution
import WharfUpstream

/// Maps upstream answers and failures to the OCI error a client should see.
enum UpstreamErrors {
    enum Kind { case manifest, blob, tags }

    static func fromStatus(_ status: Int, headers: HTTPHeaders, kind: Kind) -> RegistryError {
        switch status {
        case 404, 401, 403:
            // Docker Hub answers 401 for missing and private repositories alike: never relay its challenge.
            return notFound(kind, "not found upstream (or not visible to this mirror)")
        case 429:
            // The upstream's value is read and capped, never passed on as its text.
            return RegistryError(
                .tooManyRequests, "upstream rate limit reached", headers: [("Retry-After", UpstreamClient.clientRetryAfter(headers))])
        default:
            return unavailable(kind, "upstream answered \(status)")
        }
    }

    /// A transport-level failure (unreachable, circuit open, rate-limit back-off) as a client error.
    static func from(_ error: any Error, kind: Kind) -> RegistryError {
        if let e = error as? RegistryError { return e }
        if let backoff = error as? UpstreamBackoff {
            let seconds = max(1, backoff.retryAfter.components.seconds + (backoff.retryAfter.components.attoseconds > 0 ? 1 : 0))
            return RegistryError(.tooManyRequests, "upstream rate limit reached; retry later", headers: [("Retry-After", String(seconds))])
        }
        if error is UpstreamCircuitOpen {
            return unavailable(kind, "upstream unavailable (circuit open after repeated failures)")
        }
        if error is UpstreamRedirectRefused {
            // Where it pointed (an internal address, say) is for the operator's log, not for clients.
            return unavailable(kind, "the upstream redirected where this mirror does not go")
        }
        if UpstreamUnreachable.isMalformedAnswer(error) {
            // It answered, but broke HTTP: a bad gateway, not one that is down (blobs: 404, as `unavailable` says why).
            let message = "the upstream's answer was malformed"
            return kind == .blob ? unavailable(kind, message) : RegistryError(.unknown, message, status: 502)
        }
        return unavailable(kind, "upstream unreachable")
    }

    static func unavailable(_ kind: Kind, _ message: String) -> RegistryError {
        // Blobs: 404 BLOB_UNKNOWN makes Docker fall back at once instead of retrying for ~75 s.
        kind == .blob ? RegistryError(.blobUnknown, message) : RegistryError(.unavailable, message)
    }

    static func notFound(_ kind: Kind, _ message: String) -> RegistryError {
        switch kind {
        case .manifest: RegistryError(.manifestUnknown, message)
        case .blob: RegistryError(.blobUnknown, message)
        case .tags: RegistryError(.nameUnknown, message)
        }
    }
}
