import Crypto
import Foundation

/// SHA-256 of files and bytes, as OCI digests (`sha256:<hex>`).
public enum FileDigest {
    /// Streams the file through SHA-256 in 1 MiB chunks.
    public static func sha256(path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw FixtureError.invalid("cannot open \(path)")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
        }
        return "sha256:" + hexString(hasher.finalize())
    }

    /// SHA-256 of `bytes`.
    public static func sha256<Bytes: DataProtocol>(_ bytes: Bytes) -> String {
        "sha256:" + hexString(SHA256.hash(data: bytes))
    }
}
