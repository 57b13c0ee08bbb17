/// Checks on `edge`, `webhooks` and `warm` that hold however they were set (file or flags).
extension ConfigurationValidator {
    mutating func deployment() {
        self.edge()
        for (i, hook) in self.config.webhooks.enumerated() { self.webhook(hook, at: "webhooks[\(i)]") }
        if let warm = self.config.warm { self.warm(warm) }
    }

    private mutating func edge() {
        let edge = self.config.edge
        if let url = edge.redirectBlobsTo, let problem = Syntax.httpURLProblem(url, baseOnly: true) {
            self.fail("edge.redirect-blobs-to", problem)
        }
        if edge.secretFile?.isEmpty == true {
            self.fail("edge.secret-file", "the secret file must not be empty")
        } else if edge.isEnabled, edge.secretFile == nil {
            self.fail("edge.secret-file", """
                edge mode ('redirect-blobs-to' or 'require-signed-blobs') needs 'secret-file': a file with the secret \
                (at least 16 bytes) shared by edge and caches (--edge-secret)
                """)
        } else if !edge.isEnabled, edge.secretFile != nil {
            self.fail("edge.secret-file", "'secret-file' is only used with 'redirect-blobs-to' (edge) or 'require-signed-blobs: true' (cache)")
        }
        if !(1...EdgeConfiguration.maxTTLSeconds).contains(edge.ttlSeconds) {
            self.fail("edge.ttl", "ttl must be between 1s and 24h, got \(edge.ttlSeconds) s")
        }
    }

    private mutating func webhook(_ hook: WebhookConfiguration, at path: String) {
        if let problem = Syntax.httpURLProblem(hook.url, baseOnly: false) { self.fail("\(path).url", problem) }
        if hook.secretFile?.isEmpty == true { self.fail("\(path).secret-file", "the secret file must not be empty") }
        guard let events = hook.events else { return }
        if events.isEmpty { self.fail("\(path).events", "list at least one event, or leave 'events' out for all of them") }
        let known = WebhookConfiguration.eventNames
        for (j, event) in events.enumerated() where !known.contains(event) {
            let hint = EditDistance.closest(to: event, among: known).map { "did you mean '\($0)'?" } ?? "events are \(known.joined(separator: ", "))"
            self.fail("\(path).events[\(j)]", "unknown event '\(event)'; \(hint)")
        }
    }

    private mutating func warm(_ warm: WarmConfiguration) {
        if warm.everySeconds < 1 { self.fail("warm.every", "the interval must be at least 1s") }
        if let rate = warm.maxRate, rate <= 0 { self.fail("warm.max-rate", "max-rate must be greater than 0 (leave it out for no cap)") }
        for (j, platform) in warm.platforms.enumerated() {
            if let problem = CommandLineValues.platformProblem(platform) { self.fail("warm.platforms[\(j)]", problem) }
        }
        if warm.images.isEmpty { self.fail("warm.images", "list at least one image (leave 'warm' out to warm nothing)") }
        for (j, image) in warm.images.enumerated() {
            if let problem = Syntax.imageProblem(image) { self.fail("warm.images[\(j)]", "'\(image)' is not a valid image: \(problem)") }
        }
        if self.config.edge.redirectBlobsTo != nil {
            self.fail("warm", "an edge redirects blobs and keeps none; put the warm list in the caches' configuration")
        }
    }
}
