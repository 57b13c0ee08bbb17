import Testing
import WharfConfig
import WharfText

/// Values typed on the command line (durations, sizes, platforms, the URL of a running Wharf, "did
/// you mean"), read as the configuration file reads them, and numbers shown to people (IEC sizes,
/// durations in the same forms).
@Suite(.tags(.unit)) struct CommandLineValuesTests {
    @Test(arguments: [("300", 300), ("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("0", 0)] as [(String, Int)])
    func durationsAsInTheFile(_ text: String, _ seconds: Int) throws {
        #expect(try CommandLineValues.seconds(text) == seconds)
        #expect(DurationString.seconds(text) == seconds, "the same parser as the file's")
    }

    @Test func durationMistakeSaysTheForms() {
        #expect(throws: ValueProblem("'5x' is not a duration; write \(CommandLineValues.durationForms)")) { try CommandLineValues.seconds("5x") }
        for bad in ["", "-5s", "5 minutes", "1.5h", "2d"] {
            #expect(throws: ValueProblem.self, "\(bad)") { try CommandLineValues.seconds(bad) }
        }
    }

    @Test(arguments: [("512MiB", 512 << 20), ("50MB", 50_000_000), ("1.5 KiB", 1536), ("1048576", 1_048_576)] as [(String, Int64)])
    func sizesAcceptBothUnitSystems(_ text: String, _ bytes: Int64) throws {
        #expect(try CommandLineValues.bytes(text) == bytes)
    }

    @Test func sizeMistakeSaysTheUnits() {
        #expect(throws: ValueProblem.self) { try CommandLineValues.bytes("5 parsecs") }
        do {
            _ = try CommandLineValues.bytes("12XB")
        } catch {
            #expect(error.description.hasPrefix("'12XB' is not a size") && error.description.contains("KiB…TiB are powers of 1024"))
        }
    }

    @Test func platforms() {
        for good in ["linux/amd64", "linux/arm64", "linux/arm/v7", "windows/amd64"] {
            #expect(CommandLineValues.platformProblem(good) == nil, "\(good)")
        }
        #expect(CommandLineValues.platformProblem("arm64")
            == "'arm64' is not a platform; write OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64 or linux/arm/v7; did you mean 'linux/arm64'?")
        #expect(CommandLineValues.platformProblem("Linux/AMD64")?.hasSuffix("did you mean 'linux/amd64'?") == true)
        for bad in ["", "linux/", "/amd64", "linux/arm/v7/x", "linux amd64", "linux//amd64"] {
            #expect(CommandLineValues.platformProblem(bad)?.contains("is not a platform") == true, "\(bad)")
        }
    }

    @Test func serverURLs() throws {
        #expect(try CommandLineValues.serverURL("127.0.0.1:18010") == "http://127.0.0.1:18010")
        #expect(try CommandLineValues.serverURL("wharf.example:5000/") == "http://wharf.example:5000")
        #expect(try CommandLineValues.serverURL("https://wharf.example") == "https://wharf.example")
        #expect(try CommandLineValues.serverURL("http://[::1]:5000//") == "http://[::1]:5000")
        #expect(try CommandLineValues.serverURL("http://wharf:5000/dockerhub") == "http://wharf:5000/dockerhub", "a path prefix is kept")
        #expect(throws: ValueProblem("scheme 'ftp' is not supported; expected http(s)://HOST:PORT or HOST:PORT, e.g. http://127.0.0.1:5000")) {
            try CommandLineValues.serverURL("ftp://wharf:21")
        }
        for bad in ["", "/stats", "http://", "http://wharf:99999", "http://user:pw@wharf:5000", "http://wharf:5000/?x", "http://bad host:1"] {
            #expect(throws: ValueProblem.self, "\(bad)") { try CommandLineValues.serverURL(bad) }
        }
    }

    @Test func suggestions() {
        let commands = ["serve", "config", "htpasswd", "warm", "export", "import", "stats", "verify", "gc"]
        #expect(CommandLineValues.suggestion(for: "statz", among: commands) == "stats")
        #expect(CommandLineValues.suggestion(for: "imprt", among: commands) == "import")
        #expect(CommandLineValues.suggestion(for: "Serve", among: commands) == "serve")
        #expect(CommandLineValues.suggestion(for: "frobnicate", among: commands) == nil)
    }

    @Test(arguments: [
        (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (1_048_575, "1.0 MiB"), (50_000_000, "47.7 MiB"),
        (1_000_000_000, "953.7 MiB"), (200 << 30, "200.0 GiB"), (-2048, "-2.0 KiB"),
    ] as [(Int64, String)])
    func bytesShownInIEC(_ bytes: Int64, _ text: String) {
        #expect(ByteCount.string(bytes) == text)
    }

    @Test func durationsShownAsTyped() throws {
        for (seconds, text) in [(0, "0s"), (45, "45s"), (300, "5m"), (5400, "1h30m"), (21_600, "6h"), (3661, "1h1m1s")] {
            #expect(DurationText.string(seconds: seconds) == text)
            #expect(try CommandLineValues.seconds(text) == seconds, "reads back")
        }
    }

    @Test func versionIsOneString() {
        #expect(WharfVersion.description == "\(WharfVersion.version) (commit \(WharfVersion.commit))")
        #expect(WharfVersion.userAgent == "wharf/\(WharfVersion.version)")
    }
}
