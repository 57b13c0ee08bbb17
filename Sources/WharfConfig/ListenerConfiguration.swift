/// One address the registry API listens on, plain HTTP or TLS.
public struct ListenerConfiguration: Sendable, Equatable {
    /// Host name or IP address, without brackets for IPv6.
    public var host: String
    /// TCP port, 0–65535 (0 picks a free port).
    public var port: Int
    /// Certificate and key; `nil` for plain HTTP.
    public var tls: TLSFiles?

    public init(host: String, port: Int, tls: TLSFiles? = nil) {
        self.host = host
        self.port = port
        self.tls = tls
    }

    /// `HOST:PORT`, with brackets around an IPv6 host.
    public var address: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }

    /// Parses `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (all interfaces) into a plain listener.
    ///
    /// Throws a ``ConfigurationError`` with key path `listen` and no position.
    public static func parse(address: String) throws(ConfigurationError) -> ListenerConfiguration {
        func fail(_ why: String) -> ConfigurationError {
            ConfigurationError(keyPath: "listen", message: "'\(address)' is not a valid listen address: \(why)")
        }
        guard let colon = address.lastIndex(of: ":") else { throw fail("expected HOST:PORT, e.g. 0.0.0.0:5000") }
        let portText = address[address.index(after: colon)...]
        var host = String(address[..<colon])
        if host.hasPrefix("[") {
            guard host.hasSuffix("]"), host.count > 2 else { throw fail("an IPv6 address is written [ADDRESS]:PORT") }
            host = String(host.dropFirst().dropLast())
            guard host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." || $0 == "%" }) else {
                throw fail("'\(host)' is not an IPv6 address")
            }
        } else if host.contains(":") {
            throw fail("put an IPv6 address in brackets, e.g. [::]:5000")
        } else if !host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_") }) {
            throw fail("'\(host)' is not a host name or IP address")
        }
        guard !portText.isEmpty, portText.allSatisfy(\.isASCII), portText.allSatisfy(\.isNumber) else {
            throw fail("the port must be a number 0-65535")
        }
        guard portText.count <= 5, let port = Int(portText), (0...65535).contains(port) else {
            throw fail("port \(portText) is out of range 0-65535")
        }
        return ListenerConfiguration(host: host.isEmpty ? "0.0.0.0" : host, port: port)
    }
}

/// PEM files for a TLS listener.
public struct TLSFiles: Sendable, Equatable {
    /// Certificate chain, leaf first (PEM).
    public var certificate: String
    /// Private key (PEM).
    public var key: String

    public init(certificate: String, key: String) {
        self.certificate = certificate
        self.key = key
    }
}
