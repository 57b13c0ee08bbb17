import Testing
import WharfConfig

/// `edge`, `webhooks` and `warm`: what they parse to, and how their mistakes are reported.
@Suite(.tags(.unit)) struct DeploymentConfigurationTests {
    @Test func fullSectionsParse() throws {
        let config = try ConfigurationLoader.parse(yaml: """
            edge:
              require-signed-blobs: true
              secret-file: /etc/wharf/edge.secret
              ttl: 2m
            webhooks:
              - url: https://hooks.example.com/wharf?source=edge
                secret-file: /etc/wharf/webhook.secret
                events: [blob.filled, upstream.down, upstream.up]
              - url: http://10.0.0.7:8080/all
            warm:
              every: 6h
              platforms: [linux/amd64, linux/arm/v7]
              max-rate: 50MB
              images: [library/alpine:3.20, "team/app@sha256:\(String(repeating: "a", count: 64))", ghcr/org/tool]
            """)
        #expect(config.edge == EdgeConfiguration(
            redirectBlobsTo: nil, requireSignedBlobs: true, secretFile: "/etc/wharf/edge.secret", ttlSeconds: 120))
        #expect(config.edge.isEnabled)
        #expect(config.webhooks == [
            WebhookConfiguration(
                url: "https://hooks.example.com/wharf?source=edge", secretFile: "/etc/wharf/webhook.secret",
                events: ["blob.filled", "upstream.down", "upstream.up"]),
            WebhookConfiguration(url: "http://10.0.0.7:8080/all", secretFile: nil, events: nil),
        ])
        #expect(config.warm == WarmConfiguration(
            everySeconds: 21_600, platforms: ["linux/amd64", "linux/arm/v7"], maxRate: 50_000_000,
            images: ["library/alpine:3.20", "team/app@sha256:" + String(repeating: "a", count: 64), "ghcr/org/tool"]))
    }

    @Test func edgeModeAndDefaults() throws {
        let edge = try ConfigurationLoader.parse(yaml: "edge:\n  redirect-blobs-to: http://cache.site:5000/\n  secret-file: /s\n")
        #expect(edge.edge == EdgeConfiguration(redirectBlobsTo: "http://cache.site:5000/", requireSignedBlobs: false, secretFile: "/s", ttlSeconds: 60))
        let defaults = WharfConfiguration()
        #expect(!defaults.edge.isEnabled && defaults.edge.ttlSeconds == 60)
        #expect(defaults.webhooks.isEmpty && defaults.warm == nil)
        // An empty section is the default; `warm` without `every` re-runs every 6 hours.
        let empty = try ConfigurationLoader.parse(yaml: "edge:\nwebhooks: []\nwarm:\n")
        #expect(empty == WharfConfiguration())
        let warm = try ConfigurationLoader.parse(yaml: "warm:\n  images: [alpine]\n")
        #expect(warm.warm == WarmConfiguration(everySeconds: 21_600, platforms: [], maxRate: nil, images: ["alpine"]))
    }

    @Test func flagsAndFileAreCheckedAlike() {
        // The same checks run on a configuration assembled from flags (no file, so no positions).
        var config = WharfConfiguration()
        config.edge.redirectBlobsTo = "ftp://cache"
        config.edge.ttlSeconds = 0
        config.webhooks = [WebhookConfiguration(url: "hooks.example.com")]
        let errors = ConfigurationLoader.validate(config)
        #expect(errors.map(\.keyPath) == ["edge.redirect-blobs-to", "edge.secret-file", "edge.ttl", "webhooks[0].url"])
        #expect(errors.allSatisfy { $0.line == nil })
    }

    static let warmImages = "warm:\n  images: [library/alpine]\n"

    static let cases: [BadConfig] = [
        BadConfig(name: "edge key misspelled", yaml: "edge:\n  redirect-blob-to: https://c.example\n  secret-file: /s\n", line: 2, phrase: "did you mean 'redirect-blobs-to'?"),
        BadConfig(name: "edge key at top level", yaml: "secret-file: /s\n", line: 1, phrase: "'secret-file' is not a top-level key; it belongs in edge"),
        BadConfig(name: "top-level key misspelled", yaml: "webhook:\n  - url: https://h.example\n", line: 1, phrase: "did you mean 'webhooks'?"),
        BadConfig(name: "edge without secret", yaml: "log-level: info\nedge:\n  redirect-blobs-to: https://c.example\n", line: 3, phrase: "needs 'secret-file'"),
        BadConfig(name: "cache without secret", yaml: "edge:\n  require-signed-blobs: true\n", line: 2, phrase: "needs 'secret-file'"),
        BadConfig(name: "secret without a mode", yaml: "edge:\n  secret-file: /s\n", line: 2, phrase: "only used with 'redirect-blobs-to'"),
        BadConfig(name: "edge URL scheme", yaml: "edge:\n  redirect-blobs-to: ftp://c.example\n  secret-file: /s\n", line: 2, phrase: "scheme 'ftp' is not supported"),
        BadConfig(name: "edge URL path", yaml: "edge:\n  redirect-blobs-to: https://c.example/v2/\n  secret-file: /s\n", line: 2, phrase: "base URL without path"),
        BadConfig(name: "edge ttl zero", yaml: "edge:\n  require-signed-blobs: true\n  secret-file: /s\n  ttl: 0\n", line: 4, phrase: "between 1s and 24h"),
        BadConfig(name: "edge ttl too long", yaml: "edge:\n  require-signed-blobs: true\n  secret-file: /s\n  ttl: 25h\n", line: 4, phrase: "between 1s and 24h, got 90000 s"),
        BadConfig(name: "edge ttl not a duration", yaml: "edge:\n  require-signed-blobs: true\n  secret-file: /s\n  ttl: a minute\n", line: 4, phrase: "expected a duration"),
        BadConfig(name: "edge mode not a boolean", yaml: "edge:\n  require-signed-blobs: sometimes\n  secret-file: /s\n", line: 2, phrase: "expected true or false"),
        BadConfig(name: "webhooks not a list", yaml: "webhooks:\n  url: https://h.example\n", line: 2, phrase: "expected a list, got a mapping"),
        BadConfig(name: "webhook as plain URL", yaml: "webhooks:\n  - https://h.example\n", line: 2, phrase: "write '- url: URL'"),
        BadConfig(name: "webhook without url", yaml: "webhooks:\n  - secret-file: /s\n", line: 2, phrase: "missing required key 'url'"),
        BadConfig(name: "webhook URL not http", yaml: "webhooks:\n  - url: https://a.example\n  - url: mailto:ops@example.com\n", line: 3, phrase: "is not a URL"),
        BadConfig(name: "webhook URL with user info", yaml: "webhooks:\n  - url: https://me:pw@h.example/x\n", line: 2, phrase: "must not contain user info"),
        BadConfig(name: "unknown event suggests", yaml: "webhooks:\n  - url: https://h.example\n    events:\n      - tag.pulled\n      - blob.filed\n", line: 5, phrase: "webhooks[0].events[1]: unknown event 'blob.filed'; did you mean 'blob.filled'?"),
        BadConfig(name: "unknown event lists all", yaml: "webhooks:\n  - url: https://h.example\n    events: [push]\n", line: 3, phrase: "events are blob.filled, tag.pulled, cache.evicted, upstream.down, upstream.up"),
        BadConfig(name: "empty event filter", yaml: "webhooks:\n  - url: https://h.example\n    events: []\n", line: 3, phrase: "list at least one event"),
        BadConfig(name: "webhook key misspelled", yaml: "webhooks:\n  - url: https://h.example\n    secret_file: /s\n", line: 3, phrase: "did you mean 'secret-file'?"),
        BadConfig(name: "warm without images", yaml: "warm:\n  every: 1h\n", line: 2, phrase: "missing required key 'images'"),
        BadConfig(name: "warm empty image list", yaml: "warm:\n  images: []\n", line: 2, phrase: "list at least one image"),
        BadConfig(name: "warm interval zero", yaml: "warm:\n  every: 0s\n  images: [alpine]\n", line: 2, phrase: "at least 1s"),
        BadConfig(name: "warm interval not a duration", yaml: "warm:\n  every: daily\n  images: [alpine]\n", line: 2, phrase: "expected a duration"),
        BadConfig(name: "warm bad image", yaml: "warm:\n  images:\n    - library/alpine\n    - Library/Alpine:3.20\n", line: 4, phrase: "warm.images[1]: 'Library/Alpine:3.20' is not a valid image"),
        BadConfig(name: "warm image with registry port", yaml: "warm:\n  images: [\"localhost:5000/app\"]\n", line: 2, phrase: "is not a valid image"),
        BadConfig(name: "warm bad platform", yaml: warmImages + "  platforms: [linux/amd64, amd64]\n", line: 3, phrase: "'amd64' is not a platform; write OS/ARCH"),
        BadConfig(name: "warm bad rate", yaml: warmImages + "  max-rate: fast\n", line: 3, phrase: "a size per second"),
        BadConfig(name: "warm zero rate", yaml: warmImages + "  max-rate: 0\n", line: 3, phrase: "max-rate must be greater than 0"),
        BadConfig(name: "warm key at top level", yaml: "images: [alpine]\n", line: 1, phrase: "it belongs in warm"),
        BadConfig(name: "warm on an edge", yaml: "edge:\n  redirect-blobs-to: https://c.example\n  secret-file: /s\n" + warmImages, line: 5, phrase: "an edge redirects blobs and keeps none"),
    ]

    @Test(arguments: Self.cases)
    func reportsLineAndMessage(_ bad: BadConfig) {
        let errors = InvalidConfigurationTests.errors(bad.yaml)
        let match = errors.first { $0.description.contains(bad.phrase) }
        #expect(match != nil, "no error mentions \"\(bad.phrase)\"; got:\n\(errors.map(\.description).joined(separator: "\n"))")
        #expect(match?.line == bad.line, "\(match?.description ?? "")")
        #expect(match?.column != nil)
    }

    @Test func misspelledRequiredKeysAreOneErrorEach() {
        let errors = InvalidConfigurationTests.errors("webhooks:\n  - ulr: https://h.example\nwarm:\n  image: [alpine]\n")
        #expect(errors.map(\.description) == [
            "2:5: webhooks[0].ulr: unknown key 'ulr'; did you mean 'url'?",
            "4:3: warm.image: unknown key 'image'; did you mean 'images'?",
        ])
    }
}
