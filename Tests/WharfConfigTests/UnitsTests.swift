import Testing
import WharfConfig

/// Sizes, durations, listen addresses, and validation of configurations built in code.
@Suite(.tags(.unit)) struct UnitsTests {
    @Test(arguments: [
        ("0", 0), ("1048576", 1_048_576), ("512MiB", 512 << 20), ("200GiB", 200 << 30), ("1TB", 1_000_000_000_000),
        ("1tib", 1 << 40), ("10 KB", 10_000), ("1.5KiB", 1536), ("7B", 7), ("  2GB ", 2_000_000_000), ("1kb", 1000),
    ] as [(String, Int64)])
    func byteSizeParses(_ text: String, _ bytes: Int64) {
        #expect(ByteSize.parse(text) == bytes)
    }

    @Test(arguments: ["", "GiB", "-1", "1.5", "12XB", "1.GB", ".5GB", "1.2.3MB", "one GB", "1 GiB GiB", "99999999999TiB", "0x10"])
    func byteSizeRejects(_ text: String) {
        #expect(ByteSize.parse(text) == nil)
    }

    @Test(arguments: [
        ("0", 0), ("300", 300), ("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("1h30m15s", 5415), ("2m5s", 125), (" 45s ", 45),
    ] as [(String, Int)])
    func durationParses(_ text: String, _ seconds: Int) {
        #expect(DurationString.seconds(text) == seconds)
    }

    @Test(arguments: ["", "s", "5 minutes", "-5s", "1.5h", "30m1h", "1h1h", "5d", "1h30", "h5", "99999999999999999999s"])
    func durationRejects(_ text: String) {
        #expect(DurationString.seconds(text) == nil)
    }

    @Test func listenAddresses() throws {
        #expect(try ListenerConfiguration.parse(address: "0.0.0.0:5000") == ListenerConfiguration(host: "0.0.0.0", port: 5000))
        #expect(try ListenerConfiguration.parse(address: ":80") == ListenerConfiguration(host: "0.0.0.0", port: 80))
        #expect(try ListenerConfiguration.parse(address: "[::1]:0") == ListenerConfiguration(host: "::1", port: 0))
        #expect(try ListenerConfiguration.parse(address: "wharf.example:65535").host == "wharf.example")
        #expect(ListenerConfiguration(host: "::", port: 5000).address == "[::]:5000")
        for bad in ["5000", "host:", "host:65536", "::1:5000", "[::1:5000", "bad host:1", "[zz]:1", "h:-1"] {
            #expect(throws: ConfigurationError.self, "\(bad)") { try ListenerConfiguration.parse(address: bad) }
        }
        do {
            _ = try ListenerConfiguration.parse(address: "x:99999")
        } catch {
            #expect(error.keyPath == "listen")
            #expect(error.line == nil)
            #expect(error.description == "listen: 'x:99999' is not a valid listen address: port 99999 is out of range 0-65535")
        }
    }

    @Test func memoryCacheSize() throws {
        #expect(WharfConfiguration().data.memoryCache == 128 << 20)
        #expect(try ConfigurationLoader.parse(yaml: "data:\n  memory-cache: 0\n").data.memoryCache == 0)
        #expect(try ConfigurationLoader.parse(yaml: "data:\n  memory-cache: 256MiB\n").data.memoryCache == 256 << 20)
    }

    @Test func validateAfterMerging() {
        var config = WharfConfiguration()
        config.clientAuth.mode = .htpasswd
        config.data.lowWatermark = 95
        config.upstreams.append(UpstreamEntry(name: "dockerhub", url: "https://mirror.example", isDefault: true))
        let errors = ConfigurationLoader.validate(config)
        #expect(errors.map(\.keyPath) == ["data.low-watermark", "client-auth.mode", "client-auth.mode", "upstreams[1].name", "upstreams[1].default"])
        #expect(errors.allSatisfy { $0.line == nil && $0.column == nil })
        #expect(errors[0].description == "data.low-watermark: low-watermark (95) must be below high-watermark (90)")

        var ok = WharfConfiguration()
        ok.listeners = [ListenerConfiguration(host: "0.0.0.0", port: 443, tls: TLSFiles(certificate: "/c", key: "/k"))]
        ok.clientAuth = ClientAuthConfiguration(mode: .htpasswd, htpasswdFile: "/etc/wharf/htpasswd")
        ok.upstreams = [UpstreamEntry(name: "a", url: "http://[::1]:5000/"), UpstreamEntry(name: "b", url: "https://b.example", pathPrefix: "b")]
        #expect(ConfigurationLoader.validate(ok).isEmpty)
        #expect(ok.defaultUpstream == nil)
    }

    @Test func errorDescriptions() {
        #expect(ConfigurationError(line: 3, column: 5, keyPath: "upstreams[1].url", message: "bad").description == "3:5: upstreams[1].url: bad")
        #expect(ConfigurationError(keyPath: "log-level", message: "bad").description == "log-level: bad")
        #expect(ConfigurationError(line: 1, column: 1, keyPath: "", message: "syntax").description == "1:1: syntax")
        let both = ConfigurationErrors([ConfigurationError(keyPath: "a", message: "x"), ConfigurationError(keyPath: "b", message: "y")])
        #expect(both.description == "a: x\nb: y")
    }
}
