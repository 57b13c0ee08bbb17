import Crypto
import Foundation

/// Signed, short-lived blob URLs for the edge/cache split (Docker Trusted Registry's content-cache
/// model): an edge Wharf authorizes a pull and answers blob GETs with a `307` to a cache, carrying
/// `wharf-expires` (Unix seconds) and `wharf-signature` = hex HMAC-SHA256 over
/// `METHOD \n PATH \n DIGEST \n EXPIRES` with a shared secret; the cache checks it in constant time.
public struct BlobURLSigner: Sendable {
    public enum Verdict: Sendable, Equatable {
        case valid
        /// No signature at all: 401.
        case missing
        /// Wrong signature, or parameters that do not parse: 403.
        case invalid
        /// Past `wharf-expires`: 403.
        case expired
    }

    public static let expiresParameter = "wharf-expires"
    public static let signatureParameter = "wharf-signature"

    private let key: SymmetricKey

    public init(secret: [UInt8]) {
        precondition(secret.count >= 16, "the edge secret must hold at least 16 bytes")
        self.key = SymmetricKey(data: secret)
    }

    /// Reads the secret from a file (its bytes, surrounding whitespace trimmed); at least 16 bytes.
    public static func load(secretFile path: String) throws -> BlobURLSigner {
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        let trimmed = Array(String(decoding: raw, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).utf8)
        guard trimmed.count >= 16 else {
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "edge secret \(path) must hold at least 16 bytes"])
        }
        return BlobURLSigner(secret: trimmed)
    }

    /// The query string (without `?`) that authorizes `method path` for `digest` until `expires`.
    public func query(method: String, path: String, digest: String, expires: UInt64) -> String {
        "\(Self.expiresParameter)=\(expires)&\(Self.signatureParameter)=\(self.signature(method: method, path: path, digest: digest, expires: expires))"
    }

    public func signature(method: String, path: String, digest: String, expires: UInt64) -> String {
        let message = Array("\(method)\n\(path)\n\(digest)\n\(expires)".utf8)
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: self.key)
        return mac.map { String(format: "%02x", $0) }.joined()
    }

    /// Checks a request's signature parameters. `now` in Unix seconds.
    public func verify(method: String, path: String, digest: String, expires: String?, signature: String?, now: UInt64) -> Verdict {
        guard let expires, let signature else { return expires == nil && signature == nil ? .missing : .invalid }
        guard let deadline = UInt64(expires), signature.utf8.count == 64, let given = Self.bytes(hex: signature) else { return .invalid }
        let message = Array("\(method)\n\(path)\n\(digest)\n\(deadline)".utf8)
        // Constant time: swift-crypto compares the code without an early exit.
        guard HMAC<SHA256>.isValidAuthenticationCode(given, authenticating: message, using: self.key) else { return .invalid }
        return now <= deadline ? .valid : .expired
    }

    private static func bytes(hex: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(32)
        var high: UInt8?
        for c in hex.utf8 {
            let v: UInt8
            switch c {
            case 0x30...0x39: v = c - 0x30
            case 0x61...0x66: v = c - 0x61 + 10
            default: return nil
            }
            if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
        }
        return out.count == 32 ? out : nil
    }
}

/// How this Wharf takes part in the edge/cache split.
public struct EdgeSettings: Sendable {
    /// Edge: answer blob GETs with a signed `307` to this cache base URL (e.g. `http://cache.site:5000`).
    public var redirectBlobsTo: String?
    /// Cache: serve blobs only on a valid signature.
    public var requireSignedBlobs: Bool
    public var signer: BlobURLSigner
    /// How long a redirect stays valid.
    public var lifetime: Duration

    public init(redirectBlobsTo: String?, requireSignedBlobs: Bool, signer: BlobURLSigner, lifetime: Duration = .seconds(60)) {
        self.redirectBlobsTo = redirectBlobsTo.map { var u = $0; while u.hasSuffix("/") { u.removeLast() }; return u }
        self.requireSignedBlobs = requireSignedBlobs
        self.signer = signer
        self.lifetime = lifetime
    }
}
