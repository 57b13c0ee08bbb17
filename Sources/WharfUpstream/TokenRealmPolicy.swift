import Foundation

/// Which token realms may receive credentials (Wharf's own, or a pass-through client's).
///
/// Only a realm with the upstream's own scheme, host and port, or one whose origin is listed in
/// ``UpstreamConfiguration/tokenRealms``. Docker Hub upstreams trust `https://auth.docker.io` without
/// listing it. There is no registrable-domain guess: comparing the last two labels of host names
/// would trust any `*.co.uk` realm for a `registry.example.co.uk`, and the same host on another port
/// or scheme is another service. Anonymous token requests (no credentials) go to any http(s) realm.
struct TokenRealmPolicy: Sendable {
    /// Scheme, host and port; the port is explicit (80/443 when the URL has none).
    struct Origin: Sendable, Hashable {
        let scheme: String
        let host: String
        let port: Int

        init?(_ url: String) {
            guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(), scheme == "http" || scheme == "https",
                  let host = c.host?.lowercased(), !host.isEmpty
            else { return nil }
            self.scheme = scheme
            self.host = RedirectPolicy.bare(host)
            self.port = c.port ?? (scheme == "https" ? 443 : 80)
        }
    }

    static let dockerHubRealm = "https://auth.docker.io"

    let trusted: Set<Origin>

    init(configuration: UpstreamConfiguration) {
        var listed = configuration.tokenRealms
        listed.append(configuration.url)
        if configuration.isDockerHub { listed.append(Self.dockerHubRealm) }
        self.trusted = Set(listed.compactMap(Origin.init))
    }

    func mayReceiveCredentials(_ realm: String) -> Bool {
        Origin(realm).map(self.trusted.contains) ?? false
    }
}
