import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import WharfAuth
import WharfConfig
import WharfMirror

extension ServeCommand {
    /// The edge and webhook flags on top of the file's `edge` and `webhooks`: each edge flag given
    /// replaces its key; `--webhook` replaces the whole `webhooks` list (all events, `--webhook-secret`).
    func mergeDeploymentFlags(into config: inout WharfConfiguration, origins: inout SettingOrigins) throws {
        if let url = self.edgeRedirect {
            config.edge.redirectBlobsTo = url
            origins["edge.redirect-blobs-to"] = "--edge-redirect"
        }
        if self.requireSignedBlobs { config.edge.requireSignedBlobs = true }
        if let file = self.edgeSecret {
            config.edge.secretFile = file
            origins["edge.secret-file"] = "--edge-secret"
        }
        if let ttl = self.edgeTTL {
            config.edge.ttlSeconds = try Self.parse(ttl, origin: "--edge-ttl", CommandLineValues.seconds)
            origins["edge.ttl"] = "--edge-ttl"
        }
        if !self.webhooks.isEmpty {
            config.webhooks = self.webhooks.map { WebhookConfiguration(url: $0, secretFile: self.webhookSecret) }
            for i in config.webhooks.indices {
                origins["webhooks[\(i)]"] = "--webhook"
                origins["webhooks[\(i)].secret-file"] = "--webhook-secret"
            }
        } else if self.webhookSecret != nil {
            throw ValidationError("--webhook-secret needs --webhook URL")
        }
    }
}

/// Turns the validated `edge` and `webhooks` settings into running parts, reading their secret files.
enum ServeDeployment {
    /// The edge/cache role, or nil when neither mode is on.
    static func edgeSettings(_ edge: EdgeConfiguration) throws -> EdgeSettings? {
        guard edge.isEnabled, let file = edge.secretFile else { return nil }
        let signer: BlobURLSigner
        do { signer = try BlobURLSigner.load(secretFile: file) } catch {
            throw ValidationError("edge.secret-file \(file): \(error.localizedDescription)")
        }
        return EdgeSettings(
            redirectBlobsTo: edge.redirectBlobsTo, requireSignedBlobs: edge.requireSignedBlobs, signer: signer, lifetime: .seconds(edge.ttlSeconds))
    }

    /// One endpoint per webhook, each with its own secret and event filter.
    static func notifier(_ webhooks: [WebhookConfiguration], httpClient: HTTPClient, logger: Logger) throws -> Notifier {
        Notifier(endpoints: try Self.endpoints(webhooks), httpClient: httpClient, logger: logger)
    }

    /// The receivers of `webhooks`, their secrets read.
    static func endpoints(_ webhooks: [WebhookConfiguration]) throws -> [Notifier.Endpoint] {
        try webhooks.map { hook in
            let secret = try hook.secretFile.map { file in
                do {
                    return Array(try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines).utf8)
                } catch {
                    throw ValidationError("webhook secret file \(file): \(error.localizedDescription)")
                }
            }
            return Notifier.Endpoint(url: hook.url, secret: secret, events: hook.events.map(Set.init))
        }
    }
}
