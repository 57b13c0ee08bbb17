import Testing
import WharfConfig

/// One bad configuration and where and how it must be reported.
struct BadConfig: Sendable, CustomTestStringConvertible {
    let name: String
    let yaml: String
    let line: Int
    let phrase: String
    var testDescription: String { self.name }
}

/// Every bad configuration reports its mistake at the right line with a clear message.
@Suite(.tags(.unit)) struct InvalidConfigurationTests {
    static let upstreamsAB = """
        upstreams:
          - name: a
            url: https://a.example
        """

    static let cases: [BadConfig] = [
        BadConfig(name: "unknown key suggests", yaml: "upstreams:\n  - name: a\n    urll: https://a.example\n", line: 3, phrase: "upstreams[0].urll: unknown key 'urll'; did you mean 'url'?"),
        BadConfig(name: "unknown top-level key suggests", yaml: "log-level: info\nupstream:\n  - name: a\n", line: 2, phrase: "did you mean 'upstreams'?"),
        BadConfig(name: "unknown key lists allowed", yaml: "data:\n  folder: /x\n", line: 2, phrase: "allowed keys: directory, max-size"),
        BadConfig(name: "misplaced key", yaml: "max-size: 10GiB\n", line: 1, phrase: "belongs in data"),
        BadConfig(name: "port out of range", yaml: "listen:\n  - address: \"0.0.0.0:5000\"\n  - address: \"0.0.0.0:70000\"\n", line: 3, phrase: "out of range 0-65535"),
        BadConfig(name: "port not a number", yaml: "listen:\n  - address: \"localhost:http\"\n", line: 2, phrase: "port must be a number"),
        BadConfig(name: "IPv6 without brackets", yaml: "listen:\n  - address: \"::1:5000\"\n", line: 2, phrase: "in brackets"),
        BadConfig(name: "duplicate listener", yaml: "listen:\n  - address: \":5000\"\n  - address: \"0.0.0.0:5000\"\n", line: 3, phrase: "already used by listen[0]"),
        BadConfig(name: "listener as plain string", yaml: "listen:\n  - \"0.0.0.0:5000\"\n", line: 2, phrase: "expected a mapping with 'address'"),
        BadConfig(name: "tls without key", yaml: "listen:\n  - address: \":5443\"\n    tls:\n      certificate: /c.pem\n", line: 4, phrase: "tls needs both 'certificate' and 'key'"),
        BadConfig(name: "list expected", yaml: "listen: \"0.0.0.0:5000\"\n", line: 1, phrase: "expected a list, got a string"),
        BadConfig(name: "mapping expected", yaml: "data: /var/lib/wharf\n", line: 1, phrase: "expected a mapping"),
        BadConfig(name: "document not a mapping", yaml: "- listen\n", line: 1, phrase: "expected a mapping"),
        BadConfig(name: "bad size", yaml: "data:\n  max-size: 12XB\n", line: 2, phrase: "expected a size such as 200GiB"),
        BadConfig(name: "zero size", yaml: "data:\n  max-size: 0\n", line: 2, phrase: "must be greater than 0"),
        BadConfig(name: "bad memory cache size", yaml: "data:\n  memory-cache: lots\n", line: 2, phrase: "a size such as 64MiB, 256MiB or 0 (off)"),
        BadConfig(name: "watermark not a number", yaml: "data:\n  high-watermark: ninety\n", line: 2, phrase: "expected a whole number, got 'ninety'"),
        BadConfig(name: "high watermark out of range", yaml: "data:\n  high-watermark: 150\n", line: 2, phrase: "percentage 1-100"),
        BadConfig(name: "low >= high watermark", yaml: "data:\n  high-watermark: 70\n  low-watermark: 70\n", line: 3, phrase: "must be below high-watermark (70)"),
        BadConfig(name: "bad mode", yaml: "client-auth:\n  mode: ldap\n", line: 2, phrase: "one of open, htpasswd, passthrough"),
        BadConfig(name: "zero connections", yaml: "limits:\n  connections: 0\n", line: 2, phrase: "a whole number of at least 1"),
        BadConfig(name: "bad head timeout", yaml: "limits:\n  request-head-timeout: soon\n", line: 2, phrase: "a duration of at least 1 s"),
        BadConfig(name: "misplaced limit", yaml: "connections-per-client: 9\n", line: 1, phrase: "belongs in limits"),
        BadConfig(name: "htpasswd without file", yaml: "listen:\n  - address: \":5443\"\n    tls: {certificate: /c, key: /k}\nclient-auth:\n  mode: htpasswd\n", line: 5, phrase: "needs 'htpasswd: FILE'"),
        BadConfig(name: "htpasswd over plain HTTP", yaml: "client-auth:\n  htpasswd: /etc/wharf/htpasswd\n  mode: htpasswd\n", line: 3, phrase: "clear text on the plain-HTTP listener 0.0.0.0:5000; add a listener with 'tls'"),
        BadConfig(name: "passthrough over plain HTTP", yaml: "client-auth:\n  mode: passthrough\n  allow-without-tls: false\n", line: 2, phrase: "set 'allow-without-tls: true'"),
        BadConfig(name: "bad boolean", yaml: "client-auth:\n  allow-without-tls: maybe\n", line: 2, phrase: "expected true or false"),
        BadConfig(name: "bad realm", yaml: "client-auth:\n  realm: 'say \"hi\"'\n", line: 2, phrase: "without quotes"),
        BadConfig(name: "admins in open mode", yaml: "client-auth:\n  htpasswd: /h\n  admins: [carol]\n", line: 3, phrase: "in mode open everyone sees repository names"),
        BadConfig(
            name: "admins without htpasswd", yaml: "client-auth:\n  mode: passthrough\n  allow-without-tls: true\n  admins: [carol]\n", line: 4,
            phrase: "admins sign in with the htpasswd file"),
        BadConfig(name: "admins not a list of names", yaml: "client-auth:\n  admins: carol\n", line: 2, phrase: "expected a list"),
        BadConfig(name: "bad log level", yaml: "log-level: verbose\n", line: 1, phrase: "expected a log level"),
        BadConfig(name: "bad log format", yaml: "log-level: info\nlog-format: logfmt\n", line: 2, phrase: "expected a log format (text, json)"),
        BadConfig(name: "no upstreams", yaml: "log-level: info\nupstreams: []\n", line: 2, phrase: "at least one upstream"),
        BadConfig(name: "missing url", yaml: "upstreams:\n  - name: a\n", line: 2, phrase: "missing required key 'url'"),
        BadConfig(name: "bad name", yaml: "upstreams:\n  - name: Docker Hub\n    url: https://a.example\n", line: 2, phrase: "is not a valid name"),
        BadConfig(name: "bad URL scheme", yaml: "upstreams:\n  - name: a\n    url: ftp://a.example\n", line: 3, phrase: "scheme 'ftp' is not supported"),
        BadConfig(
            name: "bad token realm", yaml: "upstreams:\n  - name: a\n    url: https://a.example\n    token-realms:\n      - unix:///run/auth.sock\n", line: 5,
            phrase: "upstreams[0].token-realms[0]: token realm: scheme 'unix' is not supported"),
        BadConfig(
            name: "private redirects not a boolean", yaml: "upstreams:\n  - name: a\n    url: https://a.example\n    allow-private-redirects: sometimes\n",
            line: 4, phrase: "expected true or false"),
        BadConfig(name: "URL with userinfo", yaml: "upstreams:\n  - name: a\n    url: https://me@a.example\n", line: 3, phrase: "must not contain credentials"),
        BadConfig(name: "URL with query", yaml: "upstreams:\n  - name: a\n    url: https://a.example/?x=1\n", line: 3, phrase: "query or fragment"),
        BadConfig(name: "URL with path", yaml: "upstreams:\n  - name: a\n    url: https://a.example/v2\n", line: 3, phrase: "must not have a path"),
        BadConfig(name: "duplicate names", yaml: upstreamsAB + "\n  - name: a\n    url: https://b.example\n", line: 4, phrase: "duplicate upstream name 'a'"),
        BadConfig(name: "two defaults", yaml: """
            upstreams:
              - name: a
                url: https://a.example
                default: true
              - name: b
                url: https://b.example
                default: true
            """, line: 7, phrase: "only one upstream can be the default; 'a' already is"),
        BadConfig(name: "namespace collision", yaml: upstreamsAB + "\n    namespaces: [ghcr.io]\n  - name: b\n    url: https://b.example\n    namespaces:\n      - quay.io\n      - GHCR.io\n", line: 9, phrase: "namespace 'ghcr.io' is already routed to upstream 'a'"),
        BadConfig(name: "namespace is an earlier URL host", yaml: upstreamsAB + "\n  - name: b\n    url: https://b.example\n    namespaces: [a.example]\n", line: 6, phrase: "its URL host"),
        BadConfig(name: "bad namespace", yaml: upstreamsAB + "\n    namespaces: [\"https://ghcr.io\"]\n", line: 4, phrase: "is not a namespace"),
        BadConfig(name: "bad prefix", yaml: upstreamsAB + "\n    path-prefix: /dockerhub/\n", line: 4, phrase: "not a valid path prefix"),
        BadConfig(name: "prefix collision", yaml: upstreamsAB + "\n    path-prefix: mirrors\n  - name: b\n    url: https://b.example\n    path-prefix: mirrors/quay\n", line: 7, phrase: "overlaps the prefix of upstream 'a'"),
        BadConfig(name: "same prefix", yaml: upstreamsAB + "\n    path-prefix: hub\n  - name: b\n    url: https://b.example\n    path-prefix: hub\n", line: 7, phrase: "is the same as the prefix of upstream 'a'"),
        BadConfig(name: "bad duration", yaml: upstreamsAB + "\n    tag-ttl: 5 minutes\n", line: 4, phrase: "expected a duration such as 300, 90s"),
        BadConfig(name: "zero first-byte timeout", yaml: upstreamsAB + "\n    first-byte-timeout: 0\n", line: 4, phrase: "first-byte-timeout must be between 1s and 1h"),
        BadConfig(name: "idle timeout over an hour", yaml: upstreamsAB + "\n    idle-timeout: 2h\n", line: 4, phrase: "idle-timeout must be between 1s and 1h"),
        BadConfig(name: "reserve over 100 %", yaml: upstreamsAB + "\n    rate-limit-reserve: 150%\n", line: 4, phrase: "expected a percentage such as 10%"),
        BadConfig(name: "admin without credentials", yaml: "admin:\n  allow-without-tls: true\n", line: 2, phrase: "the admin API needs 'htpasswd: FILE' or 'token-file: FILE'"),
        BadConfig(name: "bad connect timeout", yaml: upstreamsAB + "\n    connect-timeout: fast\n", line: 4, phrase: "expected a duration such as 300, 90s"),
        BadConfig(name: "glob list expected", yaml: upstreamsAB + "\n    allow: \"library/*\"\n", line: 4, phrase: "expected a list, got a string"),
        BadConfig(name: "empty glob", yaml: upstreamsAB + "\n    deny: [\"library/*\", \"\"]\n", line: 4, phrase: "pattern must be non-empty"),
        BadConfig(name: "bad pin", yaml: upstreamsAB + "\n    pin:\n      - library/alpine:3.20\n      - Library/Alpine\n", line: 6, phrase: "'Library/Alpine' is not a valid pin"),
        BadConfig(name: "bad pin names its bad component", yaml: upstreamsAB + "\n    pin:\n      - team/Tool:1\n", line: 5,
                  phrase: "invalid repository name component 'Tool'"),
        BadConfig(name: "pin repository over 255 bytes", yaml: upstreamsAB + "\n    pin:\n      - \(String(repeating: "a/", count: 128))b\n", line: 5,
                  phrase: "repository name must be 1-255 characters"),
        BadConfig(name: "bad pin digest", yaml: upstreamsAB + "\n    pin: [\"alpine@sha256:abc\"]\n", line: 4, phrase: "64 lowercase hex digits"),
        BadConfig(name: "inline password", yaml: upstreamsAB + "\n    credentials:\n      username: bob\n      password: hunter2-s3cret\n", line: 5, phrase: "inline credentials are not allowed"),
        BadConfig(name: "credentials file and env", yaml: upstreamsAB + "\n    credentials:\n      file: /run/secrets/a\n      username-env: A_USER\n      password-env: A_PASS\n", line: 5, phrase: "not both"),
        BadConfig(name: "credentials env half", yaml: upstreamsAB + "\n    credentials:\n      username-env: A_USER\n", line: 5, phrase: "'password-env' is missing"),
        BadConfig(name: "credentials env is a value", yaml: upstreamsAB + "\n    credentials:\n      username-env: A_USER\n      password-env: \"p@ss word\"\n", line: 6, phrase: "NAME of an environment variable"),
        BadConfig(name: "YAML syntax error", yaml: "log-level: info\ndata:\n  directory: /x\n   max-size: 1GiB\n", line: 4, phrase: "YAML syntax error"),
        BadConfig(name: "YAML unclosed flow list", yaml: "upstreams:\n  - name: a\n    url: https://a.example\n    allow: [a, b\nlog-level: info\n", line: 5, phrase: "YAML syntax error"),
        BadConfig(name: "duplicate key", yaml: "log-level: info\ndata:\n  directory: /x\n  directory: /y\n", line: 3, phrase: "duplicate key 'directory'"),
        BadConfig(name: "merge key", yaml: "data: &d\n  directory: /x\nclient-auth:\n  <<: *d\n", line: 4, phrase: "merge keys"),
    ]

    @Test(arguments: Self.cases)
    func reportsLineAndMessage(_ bad: BadConfig) {
        let errors = Self.errors(bad.yaml)
        let match = errors.first { $0.description.contains(bad.phrase) }
        #expect(match != nil, "no error mentions \"\(bad.phrase)\"; got:\n\(errors.map(\.description).joined(separator: "\n"))")
        #expect(match?.line == bad.line, "\(match?.description ?? "")")
        #expect(match?.column != nil)
    }

    @Test func inlineSecretsAreNeverEchoed() {
        let variants = [
            "credentials:\n      password: hunter2-s3cret\n",
            "credentials:\n      username: hunter2-s3cret\n",
            "credentials: \"bob:hunter2-s3cret\"\n",
            "credentials: [hunter2-s3cret]\n",
            "credentials:\n      file: [hunter2-s3cret]\n",
            "credentials:\n      username-env: A_USER\n      password-env: \"hunter2-s3cret!\"\n",
        ]
        for variant in variants {
            let errors = Self.errors(Self.upstreamsAB + "\n    " + variant)
            #expect(!errors.isEmpty, "\(variant)")
            let text = ConfigurationErrors(errors).description
            #expect(!text.contains("hunter2"), "\(text)")
        }
    }

    @Test func misspelledRequiredKeyIsOneError() {
        let errors = Self.errors("upstreams:\n  - nmae: a\n    url: https://a.example\nlisten:\n  - adress: \":5000\"\n")
        #expect(errors.map(\.description) == [
            "2:5: upstreams[0].nmae: unknown key 'nmae'; did you mean 'name'?",
            "5:5: listen[0].adress: unknown key 'adress'; did you mean 'address'?",
        ])
    }

    @Test func collectsEveryErrorInFileOrder() {
        let errors = Self.errors("""
            listen:
              - address: "0.0.0.0:99999"
            data:
              max-size: lots
              low-watermark: 95
            log-level: loud
            upstreams:
              - name: a
                url: gopher://a.example
                tag-ttl: soon
                colour: blue
            """)
        #expect(errors.map(\.line) == [2, 4, 5, 6, 9, 10, 11])
        #expect(errors.map(\.keyPath) == [
            "listen[0].address", "data.max-size", "data.low-watermark", "log-level",
            "upstreams[0].url", "upstreams[0].tag-ttl", "upstreams[0].colour",
        ])
        #expect(errors[0].description.hasPrefix("2:14: listen[0].address: "))
    }

    static func errors(_ yaml: String) -> [ConfigurationError] {
        do {
            _ = try ConfigurationLoader.parse(yaml: yaml)
            return []
        } catch {
            return error.errors
        }
    }
}
