import COpenSSLCrypto
import Foundation

// The OpenSSL EVP SHA-256 wrapper Wharf used before it switched to swift-crypto (equal speed, see
// loadtest/RESULTS.md), kept here so the benchmark can keep comparing the two.

/// SHA-256 through OpenSSL 3's EVP interface (`EVP_DigestInit_ex` /
/// `EVP_DigestUpdate` / `EVP_DigestFinal_ex`), which uses SHA-NI / AVX2 code
/// paths when the CPU has them. Copy-on-write value semantics.
struct OpenSSLSHA256: Sendable {
    var context: EVPContext

    /// Starts a new, empty hash.
    init() {
        context = EVPContext()
    }

    /// Feeds `bytes` into the hash.
    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        if !isKnownUniquelyReferenced(&context) { context = context.copy() }
        let rc = EVP_DigestUpdate(context.ctx, base, bytes.count)
        precondition(rc == 1, "EVP_DigestUpdate failed")
    }

    /// Returns the digest as 64 lowercase hex characters and resets the hasher.
    mutating func finalize() -> String {
        if !isKnownUniquelyReferenced(&context) { context = context.copy() }
        var digest = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))  // 32 bytes
        var length: UInt32 = 0
        let rc = withUnsafeMutableBytes(of: &digest) { raw in
            EVP_DigestFinal_ex(context.ctx, raw.baseAddress!.assumingMemoryBound(to: UInt8.self), &length)
        }
        precondition(rc == 1 && length == 32, "EVP_DigestFinal_ex failed")
        context.reset()
        return withUnsafeBytes(of: &digest) { raw in raw.map { String(format: "%02x", $0) }.joined() }
    }
}

/// Owns one `EVP_MD_CTX`. Only mutated when uniquely referenced (see
/// ``OpenSSLSHA256``), so sharing an instance between copies is safe.
final class EVPContext: @unchecked Sendable {
    /// The SHA-256 implementation, fetched once (avoids an implicit fetch on every init).
    nonisolated(unsafe) private static let sha256: OpaquePointer = {
        guard let md = EVP_MD_fetch(nil, "SHA256", nil) else { fatalError("OpenSSL has no SHA256") }
        return md
    }()

    let ctx: OpaquePointer

    init() {
        guard let ctx = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed") }
        self.ctx = ctx
        reset()
    }

    private init(copying other: EVPContext) {
        guard let ctx = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed") }
        self.ctx = ctx
        precondition(EVP_MD_CTX_copy_ex(ctx, other.ctx) == 1, "EVP_MD_CTX_copy_ex failed")
    }

    deinit {
        EVP_MD_CTX_free(ctx)
    }

    func copy() -> EVPContext {
        EVPContext(copying: self)
    }

    func reset() {
        precondition(EVP_DigestInit_ex(ctx, Self.sha256, nil) == 1, "EVP_DigestInit_ex failed")
    }
}
