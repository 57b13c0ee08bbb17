import Foundation
import NIOHTTP1
import OCIDistribution
import WharfAuth
import WharfMirror

/// The two halves of the edge/cache split: the edge's signed `307`, and the cache's check of it.
enum EdgeRedirect {
    /// What the signature covers besides method and digest: the path and the `ns` it will be routed by.
    static func signedPath(name: String, digest: String, namespace: String?) -> String {
        "/v2/\(name)/blobs/\(digest)" + (namespace.map { "#ns=\($0)" } ?? "")
    }

    static func send(_ edge: EdgeSettings, cache: String, name: String, digest: String, writer: ResponseWriter) async throws {
        let expires = UInt64(Date().timeIntervalSince1970) + UInt64(edge.lifetime.components.seconds)
        var query = edge.signer.query(
            method: "GET", path: Self.signedPath(name: name, digest: digest, namespace: writer.namespace), digest: digest, expires: expires)
        if let ns = writer.namespace { query += "&ns=" + RequestRouter.percentEncode(ns) }
        var h = writer.headers()
        h.add(name: "Location", value: "\(cache)/v2/\(name)/blobs/\(digest)?\(query)")
        h.add(name: "Cache-Control", value: "no-store")
        writer.cache = .redirect
        try await writer.send(status: .temporaryRedirect, headers: h, body: nil)
    }

    /// Cache side: 401 without a signature, 403 for a wrong or expired one.
    static func checkSignature(
        _ edge: EdgeSettings, method: String, name: String, digest: String, target: ParsedTarget, namespace: String?
    ) throws(RegistryError) {
        let verdict = Self.verdict(edge, method: method, name: name, digest: digest, target: target, namespace: namespace)
        switch verdict {
        case .valid: return
        case .missing: throw RegistryError(.unauthorized, "this cache serves blobs only through signed URLs from its edge")
        case .expired: throw RegistryError(.denied, "the signed blob URL has expired; ask the edge again")
        case .invalid: throw RegistryError(.denied, "the blob URL's signature is not valid")
        }
    }

    static func verdict(
        _ edge: EdgeSettings, method: String, name: String, digest: String, target: ParsedTarget, namespace: String?
    ) -> BlobURLSigner.Verdict {
        // A HEAD may follow a GET's redirect: it is covered by the GET signature.
        let signedMethod = method == "HEAD" ? "GET" : method
        return edge.signer.verify(
            method: signedMethod, path: Self.signedPath(name: name, digest: digest, namespace: namespace), digest: digest,
            expires: target.queryValue(BlobURLSigner.expiresParameter), signature: target.queryValue(BlobURLSigner.signatureParameter),
            now: UInt64(Date().timeIntervalSince1970))
    }
}
