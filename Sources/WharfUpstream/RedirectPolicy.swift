import Foundation

/// Which redirects from an upstream Wharf follows.
///
/// - Only to `http` and `https` URLs (`http+unix`, `file` and anything else are refused), at most
///   ``maxRedirects`` in a row.
/// - A target whose addresses are loopback, private or link-local (see ``NetworkClass``) is followed
///   only when the upstream's own host has addresses of that class too — a registry on 127.0.0.1 may
///   send Wharf to 127.0.0.1, a registry on the internet may not send it to 127.0.0.1, 10.0.0.1 or
///   169.254.169.254 — unless ``UpstreamConfiguration/allowPrivateRedirects`` is set.
/// - Host names are resolved and every address must pass, so a public-looking name that resolves to
///   127.0.0.1 is refused. Async-http-client resolves the name again when it connects: a name whose
///   answer changes between the check and the connection (DNS rebinding with a short TTL) is not
///   caught. Closing that window would need connecting to the checked address while keeping the name
///   for `Host` and TLS, which async-http-client does not offer.
struct RedirectPolicy: Sendable {
    static let maxRedirects = 5

    let upstreamHost: String
    let allowPrivate: Bool
    let resolver: any HostResolver

    /// Returns the URL to request next for `location` (an absolute or relative `Location` value) seen
    /// on `current`, after `hop` redirects so far; throws if it must not be followed.
    func next(location: String, from current: String, hop: Int) async throws -> String {
        guard hop < Self.maxRedirects else {
            throw UpstreamRedirectRefused(reason: "more than \(Self.maxRedirects) redirects")
        }
        guard let url = URL(string: location, relativeTo: URL(string: current))?.absoluteURL,
              let components = URLComponents(url: url, resolvingAgainstBaseURL: true)
        else { throw UpstreamRedirectRefused(reason: "unparsable Location") }
        let scheme = components.scheme?.lowercased() ?? ""
        guard scheme == "http" || scheme == "https" else {
            throw UpstreamRedirectRefused(reason: "redirect to a '\(scheme)' URL")
        }
        guard let host = components.host.map(Self.bare), !host.isEmpty, components.user == nil, components.password == nil else {
            throw UpstreamRedirectRefused(reason: "redirect without a plain host")
        }
        if !self.allowPrivate {
            try await self.checkAddresses(of: host)
        }
        return url.absoluteString
    }

    private func checkAddresses(of host: String) async throws {
        let targets: [IPAddress]
        do { targets = try await self.resolver.addresses(of: host) } catch {
            throw UpstreamRedirectRefused(reason: "redirect to \(host), which does not resolve")
        }
        let own = Set(((try? await self.resolver.addresses(of: Self.bare(self.upstreamHost))) ?? []).map(\.networkClass))
        for address in targets where address.networkClass != .public && !own.contains(address.networkClass) {
            throw UpstreamRedirectRefused(reason: "redirect to a \(address.networkClass.rawValue) address (\(host))")
        }
    }

    /// A host without IPv6 brackets, lowercased.
    static func bare(_ host: String) -> String {
        var h = host.lowercased()
        if h.hasPrefix("["), h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
        return h
    }
}
