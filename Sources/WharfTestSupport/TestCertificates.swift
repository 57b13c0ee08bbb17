import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A throwaway certificate authority and a server certificate for 127.0.0.1/localhost, made with
/// the `openssl` command-line tool, for tests that speak HTTPS to Wharf.
public struct TestCertificates: Sendable {
    public let directory: String
    public var caCertificate: String { self.directory + "/ca.crt" }
    public var serverCertificate: String { self.directory + "/server.crt" }
    public var serverKey: String { self.directory + "/server.key" }

    /// Creates `ca.crt`, `server.crt` and `server.key` under `directory` (created if missing).
    public static func make(in directory: String, commonName: String = "127.0.0.1") async throws -> TestCertificates {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let certs = TestCertificates(directory: directory)
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            .write(toFile: directory + "/ext.cnf", atomically: true, encoding: .utf8)
        try await Self.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                "-keyout", directory + "/ca.key", "-out", certs.caCertificate, "-days", "2", "-subj", "/CN=wharf-test-ca"])
        try await certs.issueServerCertificate(commonName: commonName)
        return certs
    }

    /// Issues a new server key and certificate (a different serial), replacing the files in place.
    public func issueServerCertificate(commonName: String = "127.0.0.1") async throws {
        let d = self.directory
        try await Self.openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                "-keyout", d + "/server.key.new", "-out", d + "/server.csr", "-subj", "/CN=\(commonName)"])
        try await Self.openssl(["x509", "-req", "-in", d + "/server.csr", "-CA", self.caCertificate, "-CAkey", d + "/ca.key",
                                "-set_serial", String(UInt32.random(in: 1...UInt32.max)), "-out", d + "/server.crt.new", "-days", "2",
                                "-extfile", d + "/ext.cnf"])
        guard rename(d + "/server.key.new", self.serverKey) == 0, rename(d + "/server.crt.new", self.serverCertificate) == 0 else {
            throw FixtureError.system("rename", errno)
        }
    }

    /// The serial number of the server certificate on disk, as `openssl x509 -serial` prints it.
    public func serverSerial() async throws -> String {
        try await Self.openssl(["x509", "-noout", "-serial", "-in", self.serverCertificate]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @discardableResult
    static func openssl(_ arguments: [String]) async throws -> String {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("wharf-openssl-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let child = try ChildProcess.spawn(executable: "/usr/bin/openssl", arguments: arguments, outputPath: log)
        let status = try await child.waitForExit(timeout: .seconds(30))
        guard status == 0 else { throw FixtureError.invalid("openssl \(arguments.first ?? "") failed: \(child.output())") }
        return child.output()
    }
}
