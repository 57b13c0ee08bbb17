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
            let retry = headers.first(name: "retry-after").map { [("Retry-After", $0)] } ?? []
            return RegistryError(.tooManyRequests, "upstream rate limit reached", headers: retry)
        default:
            return unavailable(kind, "upstream answered \(status)")
        }
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
