import Foundation
import OCIDistribution
import Testing
import WharfHTTP
import WharfMirror
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

    /// Sends `requests` over TLS with `openssl s_client` (a real TLS client) and returns every byte
    /// the server answered until it closed the connection.
    static func exchange(_ requests: String, port: Int, ca: String, work: String) async throws -> [UInt8] {
        let name = UUID().uuidString.prefix(8)
        let input = work + "/requests-\(name)", output = work + "/responses-\(name)"
        try requests.write(toFile: input, atomically: true, encoding: .utf8)
        let script = "openssl s_client -quiet -connect 127.0.0.1:\(port) -CAfile \(ca) -verify_return_error < \(input) > \(output) 2>/dev/null"
        let child = try ChildProcess.spawn(executable: "/bin/sh", arguments: ["-c", script], outputPath: work + "/sclient-\(name).log")
        _ = try await child.waitForExit(timeout: .seconds(60))
        return [UInt8](FileManager.default.contents(atPath: output) ?? Data())
    }

    @Test("open TLS listener: hits answered on the event loop, big files read out in chunks, pipelined hits, fills and ranges in order")
    func pipelinedOverTLS() async throws {
        let upstream = try UpstreamEnvironment()
        let image = try upstream.generator.image(layerSizes: [30_000, 3_000_000, 1_200_000], format: .oci)
        try upstream.storage.add(image: image, repository: "team/app", tag: "v1")
        try await upstream.start()
        let work = try TempDirectory.make("tls-hits")
        let certs = try await TestCertificates.make(in: work + "/certs")
        let tls = try TLSCertificate(certificatePath: certs.serverCertificate, keyPath: certs.serverKey)
        let wharf = try await WharfInstance.start(upstream: upstream.registry.url) { $0.tls = tls }
        do {
            let small = image.layers[0], big = image.layers[1], cold = image.layers[2]
            let get = { (digest: String, extra: String) in "GET /v2/team/app/blobs/\(digest) HTTP/1.1\r\nHost: w\r\n\(extra)\r\n" }
            // Fill two of them first (the async side over TLS: a fill followed as it is written).
            let filled = HitPathTests.split(
                try await Self.exchange(get(small.digest, "") + get(big.digest, "Connection: close\r\n"), port: wharf.port, ca: certs.caCertificate, work: work),
                headResponses: [])
            #expect(filled.map { $0.status } == [200, 200])
            #expect(filled.map { Digest.sha256(of: $0.body).description } == [small.digest, big.digest])
            let hitsBefore = wharf.mirror.stats.blobHits.value
            let pipelined = [
                get(small.digest, ""),  // hit: one buffer
                get(big.digest, ""),  // hit: a FileRegion read out in chunks below TLS
                get(cold.digest, ""),  // miss: async, behind the big file
                get(small.digest, ""),  // hit, behind the miss
                get(big.digest, "Range: bytes=1000000-1000009\r\n"),  // async-only header
                "HEAD /v2/team/app/blobs/\(big.digest) HTTP/1.1\r\nHost: w\r\n\r\n",
                get(big.digest, "Connection: close\r\n"),
            ].joined()
            let responses = HitPathTests.split(
                try await Self.exchange(pipelined, port: wharf.port, ca: certs.caCertificate, work: work), headResponses: [5])
            #expect(responses.count == 7, "got \(responses.map { $0.headers })")
            if responses.count == 7 {
                let digest = { (i: Int) in Digest.sha256(of: responses[i].body).description }
                #expect(responses[0].status == 200 && digest(0) == small.digest)
                #expect(responses[1].status == 200 && digest(1) == big.digest)
                #expect(responses[2].status == 200 && digest(2) == cold.digest)
                #expect(responses[3].status == 200 && digest(3) == small.digest)
                #expect(responses[4].status == 206 && responses[4].body.count == 10)
                #expect(responses[5].status == 200 && responses[5].headers.lowercased().contains("content-length: \(big.size)"))
                #expect(responses[6].status == 200 && digest(6) == big.digest)
            }
            #expect(wharf.mirror.stats.blobHits.value >= hitsBefore + 5)
            // A client that speaks plain HTTP to the TLS port (an http:// mirror entry) is told so,
            // in plain HTTP, and the listener goes on serving TLS.
            let plain = try await RawHTTP.request(get(small.digest, "Connection: close\r\n"), port: wharf.port)
            #expect(plain.status == 400 && plain.bodyText.contains("UNSUPPORTED") && plain.bodyText.contains("https://"), "\(plain.bodyText)")
            let after = HitPathTests.split(
                try await Self.exchange(get(small.digest, "Connection: close\r\n"), port: wharf.port, ca: certs.caCertificate, work: work), headResponses: [])
            #expect(after.map { $0.status } == [200])
        } catch {
            Issue.record(error)
        }
        await wharf.stop()
        await upstream.stop()
        try? FileManager.default.removeItem(atPath: work)
    }
}
