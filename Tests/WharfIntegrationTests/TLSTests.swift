import Foundation
import Testing
import WharfTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// HTTPS towards clients: a real pull over TLS with a test CA, client credentials over TLS, and a
/// certificate swapped in place by SIGHUP on the real binary.
@Suite(.serialized, .timeLimit(.minutes(10)), .tags(.integration, .realClients))
struct TLSTests {
    /// The serial of the certificate a TLS server presents, read with `openssl s_client`.
    static func presentedSerial(port: Int, ca: String) async throws -> String {
        let script = "openssl s_client -connect 127.0.0.1:\(port) -CAfile \(ca) -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -serial"
        let child = try ChildProcess.spawn(executable: "/bin/sh", arguments: ["-c", script], outputPath: NSTemporaryDirectory() + "wharf-sclient-\(UUID().uuidString.prefix(8)).log")
        defer { try? FileManager.default.removeItem(atPath: child.outputPath) }
        _ = try await child.waitForExit(timeout: .seconds(30))
        return child.output().trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("skopeo pulls over HTTPS (verified against a test CA) with htpasswd credentials; SIGHUP swaps the certificate in place")
    func httpsPullAndReload() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [700_000, 40_000], format: .dockerSchema2)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try await upstream.start()
        let work = try TempDirectory.make("tls")
        let certs = try await TestCertificates.make(in: work + "/certs")
        try FileManager.default.createDirectory(atPath: work + "/trust", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: certs.caCertificate, toPath: work + "/trust/ca.crt")
        let htpasswd = work + "/htpasswd"
        let made = try await WharfProcess.run(["htpasswd", "--cost", "6", "dave", "dave-pw"])  // prints one htpasswd line
        #expect(made.status == 0, "\(made.output)")
        try made.output.write(toFile: htpasswd, atomically: true, encoding: .utf8)
        let tlsPort = try FreePort.loopback()
        let wharf = try await WharfProcess.start(upstream: upstream.registry.url, dataDirectory: work + "/data", extraArguments: [
            "--tls-listen", "127.0.0.1:\(tlsPort)", "--tls-cert", certs.serverCertificate, "--tls-key", certs.serverKey,
            "--client-auth", "htpasswd", "--htpasswd", htpasswd,
        ])
        do {
            let out = work + "/out"
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let source = "docker://127.0.0.1:\(tlsPort)/team/app:v1"
            let pulled = try await Skopeo.run(arguments: [
                "--insecure-policy", "copy", "--src-cert-dir", work + "/trust", "--src-creds", "dave:dave-pw", source, "dir:\(out)/a",
            ], timeout: .seconds(120))
            #expect(pulled.status == 0, "\(pulled.output)")
            #expect(try SkopeoDir.verify(directory: out + "/a", expected: image.blobs) == [])
            // A second pull is served from the cache through TLS (buffered file bodies, not sendfile).
            let again = try await Skopeo.run(arguments: [
                "--insecure-policy", "copy", "--src-cert-dir", work + "/trust", "--src-creds", "dave:dave-pw", source, "dir:\(out)/b",
            ], timeout: .seconds(120))
            #expect(again.status == 0, "\(again.output)")
            #expect(try SkopeoDir.verify(directory: out + "/b", expected: image.blobs) == [])
            // Without the CA the client refuses the certificate: verification is real.
            let untrusted = try await Skopeo.run(arguments: ["--insecure-policy", "copy", "--src-creds", "dave:dave-pw", source, "dir:\(out)/c"], timeout: .seconds(60))
            #expect(untrusted.status != 0 && untrusted.output.contains("certificate"), "\(untrusted.output)")
            // Plain HTTP next to it refuses credentials (htpasswd only over TLS unless allowed).
            let plain = try await RawHTTP.request("GET /v2/team/app/manifests/v1 HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", port: wharf.port)
            #expect(plain.status == 403)

            let before = try await Self.presentedSerial(port: tlsPort, ca: certs.caCertificate)
            #expect(before == (try await certs.serverSerial()), "presented \(before)")
            try await certs.issueServerCertificate()
            let renewed = try await certs.serverSerial()
            #expect(renewed != before)
            wharf.child.signal(SIGHUP)
            var presented = ""
            for _ in 0..<100 {
                presented = try await Self.presentedSerial(port: tlsPort, ca: certs.caCertificate)
                if presented == renewed { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(presented == renewed, "after SIGHUP the server presents \(presented), expected \(renewed)")
            #expect(wharf.child.isRunning)
        } catch {
            Issue.record(error)
        }
        #expect(await wharf.stop() == 0)
        await upstream.stop()
        try? FileManager.default.removeItem(atPath: work)
    }
}
