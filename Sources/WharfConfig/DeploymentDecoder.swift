import Yams

/// Reads the `edge`, `webhooks` and `warm` sections. Like ``ConfigurationDecoder``, values that cannot
/// be read keep their defaults and their errors are collected in `reader`.
struct DeploymentDecoder {
    var reader: NodeReader

    static let edgeKeys = ["redirect-blobs-to", "require-signed-blobs", "secret-file", "ttl"]
    static let webhookKeys = ["url", "secret-file", "events"]
    static let warmKeys = ["every", "platforms", "max-rate", "images"]
    static let durations = "a duration such as 30, 90s, 5m, 1h or 1h30m"

    mutating func edge(_ f: Fields) -> EdgeConfiguration {
        var edge = EdgeConfiguration()
        edge.redirectBlobsTo = self.reader.text(f, "redirect-blobs-to")
        edge.requireSignedBlobs = self.reader.bool(f, "require-signed-blobs") ?? false
        edge.secretFile = self.reader.parsed(f, "secret-file", expected: "a file path", echo: false) { $0 }
        edge.ttlSeconds = self.reader.parsed(f, "ttl", expected: Self.durations, DurationString.seconds) ?? edge.ttlSeconds
        return edge
    }

    mutating func webhooks(_ items: [(path: String, node: Node)]) -> [WebhookConfiguration] {
        items.map { self.webhook($0.node, at: $0.path) }
    }

    /// One `webhooks` entry; an unreadable one becomes a placeholder so later indexes stay aligned.
    private mutating func webhook(_ node: Node, at path: String) -> WebhookConfiguration {
        var hook = WebhookConfiguration(url: "")
        if case .scalar = node, !NodeReader.isNull(node) {
            self.reader.fail(path, at: node.mark, "expected a mapping with 'url' (and optional 'secret-file', 'events'); write '- url: URL'")
            return hook
        }
        guard let f = self.reader.fields(node, at: path, keys: Self.webhookKeys) else { return hook }
        self.reader.require(["url"], in: f, at: node) { _ in "missing required key 'url' (an http(s) URL)" }
        hook.url = self.reader.text(f, "url") ?? ""
        hook.secretFile = self.reader.parsed(f, "secret-file", expected: "a file path", echo: false) { $0 }
        hook.events = self.reader.strings(f, "events")
        return hook
    }

    mutating func warm(_ f: Fields, at node: Node) -> WarmConfiguration {
        var warm = WarmConfiguration()
        self.reader.require(["images"], in: f, at: node) { _ in "missing required key 'images' (the images to keep warm)" }
        warm.everySeconds = self.reader.parsed(f, "every", expected: Self.durations, DurationString.seconds) ?? warm.everySeconds
        warm.platforms = self.reader.strings(f, "platforms") ?? []
        warm.maxRate = self.reader.parsed(f, "max-rate", expected: "a size per second such as 50MB or 100MiB", ByteSize.parse)
        warm.images = self.reader.strings(f, "images") ?? []
        return warm
    }
}
