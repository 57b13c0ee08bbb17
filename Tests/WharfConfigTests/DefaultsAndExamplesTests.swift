import Foundation
import Testing
import WharfConfig

/// Defaults, the shipped example, and every YAML block in the documentation.
@Suite(.tags(.unit)) struct DefaultsAndExamplesTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func emptyFileGivesDefaults() throws {
        for text in ["", "\n", "# only a comment\n", "---\n", "~\n"] {
            let config = try ConfigurationLoader.parse(yaml: text)
            #expect(config == WharfConfiguration(), "\(text.debugDescription)")
        }
        let config = WharfConfiguration()
        #expect(config.listeners == [ListenerConfiguration(host: "0.0.0.0", port: 5000, tls: nil)])
        #expect(config.data == DataConfiguration(directory: "./data", maxSize: nil, highWatermark: 90, lowWatermark: 80))
        #expect(config.clientAuth == ClientAuthConfiguration(mode: .open, htpasswdFile: nil, allowWithoutTLS: false, realm: "wharf"))
        #expect(config.logLevel == "info")
        #expect(config.logFormat == "text")
        #expect(try ConfigurationLoader.parse(yaml: "log-format: JSON\n").logFormat == "json")
        #expect(config.upstreams.count == 1)
        #expect(config.defaultUpstream?.name == "dockerhub")
        #expect(config.defaultUpstream?.url == "https://registry-1.docker.io")
        #expect(config.defaultUpstream?.tagTTLSeconds == 300)
        let timeouts = config.defaultUpstream.map { [$0.connectTimeoutSeconds, $0.firstByteTimeoutSeconds, $0.idleTimeoutSeconds] }
        #expect(timeouts == [5, 8, 30])
        #expect(ConfigurationLoader.validate(config).isEmpty)
    }

    @Test func emptySectionsKeepDefaults() throws {
        let config = try ConfigurationLoader.parse(yaml: "data:\nclient-auth: {}\nlisten:\n")
        #expect(config == WharfConfiguration())
    }

    @Test func limitsAreRead() throws {
        let config = try ConfigurationLoader.parse(yaml: "limits:\n  connections: 900\n  connections-per-client: 7\n  request-head-timeout: 2m\n  idle-timeout: 45\n")
        #expect(config.limits == LimitsConfiguration(connections: 900, connectionsPerClient: 7, requestHeadTimeoutSeconds: 120, idleTimeoutSeconds: 45))
        #expect(try ConfigurationLoader.parse(yaml: "").limits == LimitsConfiguration())
    }

    @Test func tokenRealmsAndPrivateRedirects() throws {
        let config = try ConfigurationLoader.parse(yaml: """
            upstreams:
              - name: lan
                url: http://registry.lan:5000
                token-realms: ["https://auth.lan", "http://registry.lan:5001/token"]
                allow-private-redirects: true
            """)
        #expect(config.upstreams[0].tokenRealms == ["https://auth.lan", "http://registry.lan:5001/token"])
        #expect(config.upstreams[0].allowPrivateRedirects)
        let plain = try ConfigurationLoader.parse(yaml: "upstreams:\n  - name: ghcr\n    url: https://ghcr.io\n")
        #expect(plain.upstreams[0].tokenRealms.isEmpty && !plain.upstreams[0].allowPrivateRedirects)
    }

    @Test func adminsAreRead() throws {
        let yaml = "client-auth:\n  mode: passthrough\n  allow-without-tls: true\n  htpasswd: /etc/wharf/admins\n  admins: [carol, ops]\n"
        let config = try ConfigurationLoader.parse(yaml: yaml)
        #expect(config.clientAuth.admins == ["carol", "ops"])
        #expect(WharfConfiguration().clientAuth.admins == [])
    }

    @Test func singleUpstreamIsTheDefault() throws {
        let config = try ConfigurationLoader.parse(yaml: "upstreams:\n  - name: ghcr\n    url: https://ghcr.io\n")
        #expect(config.upstreams.map(\.isDefault) == [true])
        #expect(config.defaultUpstream?.name == "ghcr")
        let two = try ConfigurationLoader.parse(yaml: """
            upstreams:
              - {name: a, url: "https://a.example"}
              - {name: b, url: "https://b.example"}
            """)
        #expect(two.upstreams.map(\.isDefault) == [false, false])
        #expect(two.defaultUpstream == nil)
        let explicit = try ConfigurationLoader.parse(yaml: "upstreams:\n  - {name: a, url: \"https://a.example\", default: false}\n")
        #expect(explicit.upstreams[0].isDefault == false)
    }

    @Test func shippedExampleParses() throws {
        let path = Self.packageRoot.appendingPathComponent("deploy/wharf.yaml").path
        let config = try ConfigurationLoader.load(path: path)
        #expect(config.listeners == [
            ListenerConfiguration(host: "127.0.0.1", port: 5000, tls: nil),
            ListenerConfiguration(host: "0.0.0.0", port: 5443, tls: TLSFiles(certificate: "/etc/wharf/tls/server.crt", key: "/etc/wharf/tls/server.key")),
        ])
        #expect(config.data == DataConfiguration(directory: "/var/lib/wharf", maxSize: 200 << 30, highWatermark: 90, lowWatermark: 80))
        #expect(config.clientAuth == ClientAuthConfiguration(mode: .htpasswd, htpasswdFile: "/etc/wharf/htpasswd", allowWithoutTLS: true, realm: "wharf"))
        #expect(config.logLevel == "info")
        #expect(config.logFormat == "json")
        #expect(config.upstreams == [
            UpstreamEntry(
                name: "dockerhub", url: "https://registry-1.docker.io", isDefault: true, namespaces: ["docker.io"],
                pathPrefix: "dockerhub", credentials: .file("/run/secrets/dockerhub"), tagTTLSeconds: 300,
                allow: ["library/*", "myorg/**"], deny: ["**/internal-*"],
                pins: ["library/alpine:3.20", "library/debian@sha256:" + String(repeating: "0", count: 64)]),
            UpstreamEntry(
                name: "ghcr", url: "https://ghcr.io", namespaces: ["ghcr.io"], pathPrefix: "ghcr",
                credentials: .environment(username: "GHCR_USER", password: "GHCR_TOKEN"), tagTTLSeconds: 5400),
            UpstreamEntry(name: "quay", url: "https://quay.io", namespaces: ["quay.io"], pathPrefix: "mirrors/quay"),
        ])
        #expect(config.defaultUpstream?.name == "dockerhub")
        #expect(config.edge == EdgeConfiguration(), "edge is commented out in the example")
        #expect(config.webhooks == [
            WebhookConfiguration(url: "https://hooks.example.com/wharf", secretFile: "/etc/wharf/webhook.secret"),
            WebhookConfiguration(
                url: "https://alerts.example.com/registry", secretFile: "/etc/wharf/alerts.secret", events: ["upstream.down", "upstream.up"]),
        ])
        #expect(config.warm == WarmConfiguration(
            everySeconds: 6 * 3600, platforms: ["linux/amd64"], maxRate: 50_000_000,
            images: ["library/alpine:3.20", "dockerhub/library/debian:12"]))
    }

    @Test(arguments: ["docs/configuration.md", "README.md"])
    func yamlBlocksInDocumentationParse(_ file: String) throws {
        let url = Self.packageRoot.appendingPathComponent(file)
        let text = try String(contentsOf: url, encoding: .utf8)
        let blocks = Self.yamlBlocks(in: text)
        if file.hasPrefix("docs/") { #expect(blocks.count >= 5) }
        for block in blocks {
            do {
                _ = try ConfigurationLoader.parse(yaml: block.text)
            } catch {
                Issue.record("\(file) block at line \(block.line):\n\(error)")
            }
        }
    }

    @Test func unreadableFileIsOneErrorWithoutLine() {
        #expect {
            _ = try ConfigurationLoader.load(path: "/nonexistent/wharf.yaml")
        } throws: { error in
            guard let errors = (error as? ConfigurationErrors)?.errors, errors.count == 1 else { return false }
            return errors[0].line == nil && errors[0].message.contains("/nonexistent/wharf.yaml")
        }
    }

    /// Contents of the ```yaml fences and the line each starts on.
    static func yamlBlocks(in markdown: String) -> [(line: Int, text: String)] {
        var blocks: [(line: Int, text: String)] = []
        var current: (line: Int, lines: [String])?
        for (number, line) in markdown.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if var block = current {
                if trimmed == "```" {
                    blocks.append((block.line, block.lines.joined(separator: "\n")))
                    current = nil
                } else {
                    block.lines.append(String(line))
                    current = block
                }
            } else if trimmed == "```yaml" || trimmed == "```yml" {
                current = (number + 2, [])
            }
        }
        return blocks
    }
}
