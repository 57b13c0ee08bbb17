import Testing
import WharfConfig

/// `upstreams[].fallbacks`: read in both forms, checked like upstream URLs and credentials.
@Suite(.tags(.unit)) struct FallbackConfigurationTests {
    static let hub = """
        upstreams:
          - name: dockerhub
            url: https://registry-1.docker.io
            fallbacks:
        """

    @Test func fallbacksAreRead() throws {
        let config = try ConfigurationLoader.parse(yaml: Self.hub + """

                  - https://mirror.gcr.io
                  - url: https://registry.lan:5000
                    credentials:
                      file: /run/secrets/lan
                    token-realms: ["https://auth.lan"]
                  - url: http://cache.lan
                    credentials: {username-env: CACHE_USER, password-env: CACHE_PASS}
            """)
        #expect(config.upstreams[0].fallbacks == [
            FallbackEntry(url: "https://mirror.gcr.io"),
            FallbackEntry(url: "https://registry.lan:5000", credentials: .file("/run/secrets/lan"), tokenRealms: ["https://auth.lan"]),
            FallbackEntry(url: "http://cache.lan", credentials: .environment(username: "CACHE_USER", password: "CACHE_PASS")),
        ])
        let none = try ConfigurationLoader.parse(yaml: "upstreams:\n  - name: ghcr\n    url: https://ghcr.io\n")
        #expect(none.upstreams[0].fallbacks.isEmpty)
    }

    static let cases: [BadConfig] = [
        BadConfig(name: "fallbacks not a list", yaml: hub + " https://mirror.gcr.io\n", line: 4, phrase: "upstreams[0].fallbacks: expected a list"),
        BadConfig(name: "fallback URL scheme", yaml: hub + "\n      - ftp://mirror.example\n", line: 5, phrase: "upstreams[0].fallbacks[0].url: scheme 'ftp' is not supported"),
        BadConfig(name: "fallback URL with path", yaml: hub + "\n      - url: https://mirror.example/v2\n", line: 5, phrase: "must not have a path"),
        BadConfig(name: "fallback URL with userinfo", yaml: hub + "\n      - https://me@mirror.example\n", line: 5, phrase: "must not contain credentials"),
        BadConfig(name: "fallback without url", yaml: hub + "\n      - credentials: {file: /s}\n", line: 5, phrase: "upstreams[0].fallbacks[0].url: missing required key 'url'"),
        BadConfig(name: "empty fallback", yaml: hub + "\n      -\n", line: 5, phrase: "got an empty item"),
        BadConfig(name: "fallback is the upstream", yaml: hub + "\n      - https://registry-1.docker.io/\n", line: 5, phrase: "the same registry as the upstream's own URL"),
        BadConfig(
            name: "fallback listed twice", yaml: hub + "\n      - https://mirror.gcr.io\n      - url: https://MIRROR.gcr.io\n", line: 6,
            phrase: "upstreams[0].fallbacks[1].url: 'https://MIRROR.gcr.io' is the same registry as fallbacks[0]"),
        BadConfig(
            name: "fallback inherits timeouts", yaml: hub + "\n      - url: https://mirror.gcr.io\n        first-byte-timeout: 2s\n", line: 6,
            phrase: "'first-byte-timeout' cannot be set on a fallback"),
        BadConfig(name: "fallback unknown key", yaml: hub + "\n      - url: https://mirror.gcr.io\n        credential: {file: /s}\n", line: 6, phrase: "did you mean 'credentials'?"),
        BadConfig(
            name: "fallback inline password", yaml: hub + "\n      - url: https://mirror.gcr.io\n        credentials:\n          password: hunter2\n", line: 7,
            phrase: "inline credentials are not allowed"),
        BadConfig(
            name: "fallback credentials env is a value",
            yaml: hub + "\n      - url: https://mirror.gcr.io\n        credentials:\n          username-env: U\n          password-env: \"p@ss word\"\n", line: 8,
            phrase: "upstreams[0].fallbacks[0].credentials.password-env: expected the NAME of an environment variable"),
        BadConfig(
            name: "fallback bad token realm", yaml: hub + "\n      - url: https://mirror.gcr.io\n        token-realms: [\"auth.example\"]\n", line: 6,
            phrase: "upstreams[0].fallbacks[0].token-realms[0]: 'auth.example' is not a URL"),
    ]

    @Test(arguments: Self.cases)
    func reportsLineAndMessage(_ bad: BadConfig) {
        let errors = InvalidConfigurationTests.errors(bad.yaml)
        let match = errors.first { $0.description.contains(bad.phrase) }
        #expect(match != nil, "no error mentions \"\(bad.phrase)\"; got:\n\(errors.map(\.description).joined(separator: "\n"))")
        #expect(match?.line == bad.line, "\(match?.description ?? "")")
    }

    @Test func fallbackSecretsAreNeverEchoed() {
        for variant in ["credentials: \"bob:hunter2-s3cret\"", "credentials: {password: hunter2-s3cret}", "credentials: {file: [hunter2-s3cret]}"] {
            let errors = InvalidConfigurationTests.errors(Self.hub + "\n      - url: https://mirror.gcr.io\n        " + variant + "\n")
            #expect(!errors.isEmpty, "\(variant)")
            #expect(!ConfigurationErrors(errors).description.contains("hunter2"), "\(variant)")
        }
    }
}
