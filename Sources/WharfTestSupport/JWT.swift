import Crypto
import Foundation

/// One `access` entry of a Distribution token: a resource and the actions granted on it.
public struct TokenAccess: Sendable, Hashable, Codable {
    public let type: String
    public let name: String
    public let actions: [String]

    public init(type: String, name: String, actions: [String]) {
        self.type = type
        self.name = name
        self.actions = actions
    }
}

/// The claim set Distribution 2.x expects (`registry/auth/token/token.go`).
///
/// `aud` is a single string: Distribution 2.8 unmarshals it into a Go `string`, so an
/// array would make the token malformed.
struct JWTClaims: Encodable {
    let iss: String
    let sub: String
    let aud: String
    let exp: Int64
    let nbf: Int64
    let iat: Int64
    let jti: String
    let access: [TokenAccess]
}

/// Signs ES256 JWTs whose header carries the signing certificate in `x5c`, as
/// Distribution's token access controller verifies against its `rootcertbundle`.
struct JWTSigner: Sendable {
    let key: P256.Signing.PrivateKey
    /// Standard base64 of the certificate's DER bytes.
    let certificateBase64: String

    /// - Parameters:
    ///   - keyPEM: a PKCS#8 or SEC1 PEM private key on P-256.
    ///   - certificatePEM: the matching X.509 certificate in PEM.
    init(keyPEM: String, certificatePEM: String) throws {
        key = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
        let body = certificatePEM
            .split(whereSeparator: \.isNewline)
            .drop { !$0.hasPrefix("-----BEGIN CERTIFICATE-----") }
            .dropFirst()
            .prefix { !$0.hasPrefix("-----END CERTIFICATE-----") }
            .joined()
        guard let der = Data(base64Encoded: body), !der.isEmpty else {
            throw FixtureError.invalid("no certificate found in PEM")
        }
        certificateBase64 = der.base64EncodedString()
    }

    func sign(_ claims: JWTClaims) throws -> String {
        struct Header: Encodable {
            let typ: String
            let alg: String
            let x5c: [String]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let header = try encoder.encode(Header(typ: "JWT", alg: "ES256", x5c: [certificateBase64]))
        let payload = try encoder.encode(claims)
        let signingInput = base64URL(header) + "." + base64URL(payload)
        // ES256 signatures are the raw r || s (64 bytes), not DER.
        let signature = try key.signature(for: Data(signingInput.utf8)).rawRepresentation
        return signingInput + "." + base64URL(signature)
    }
}

/// Base64url without padding (RFC 7515 §2).
func base64URL(_ data: Data) -> String {
    data.base64EncodedString()
        .replacingOccurrences(of: "+", with: "-")
        .replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}
