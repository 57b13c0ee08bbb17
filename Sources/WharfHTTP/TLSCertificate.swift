import Logging
import NIOSSL
import Synchronization

/// The server's certificate chain and key for a TLS listener, reloadable (SIGHUP) in place:
/// new connections use the new files, connections already open keep theirs.
public final class TLSCertificate: Sendable {
    public let certificatePath: String
    public let keyPath: String
    private let context: Mutex<NIOSSLContext>

    /// Loads both PEM files; throws when either is unreadable or they do not form a usable pair.
    public init(certificatePath: String, keyPath: String) throws {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.context = Mutex(try Self.load(certificatePath, keyPath))
    }

    /// The context new connections use.
    public var current: NIOSSLContext { self.context.withLock { $0 } }

    /// Re-reads the files. On failure the previous certificate stays in use and the error is thrown.
    public func reload() throws {
        let fresh = try Self.load(self.certificatePath, self.keyPath)
        self.context.withLock { $0 = fresh }
    }

    static func load(_ certificatePath: String, _ keyPath: String) throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
        guard !chain.isEmpty else { throw NIOSSLError.failedToLoadCertificate }
        let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["http/1.1"]
        return try NIOSSLContext(configuration: configuration)
    }
}
