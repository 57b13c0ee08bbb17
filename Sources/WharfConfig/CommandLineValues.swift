/// Values typed on the command line, read in the same forms as the configuration file takes them
/// (durations, sizes, platforms), plus the base URL of a running Wharf and "did you mean" hints.
///
/// Each parser returns the value or throws a ``ValueProblem`` whose text says what was expected; the
/// caller puts the flag's name in front of it.
public enum CommandLineValues {
    /// The forms a duration takes, for messages.
    public static let durationForms = "whole seconds or hours, minutes and seconds in that order: 300, 90s, 5m, 1h, 1h30m"

    /// A duration in whole seconds: `300`, `90s`, `5m`, `1h30m` (``DurationString``).
    public static func seconds(_ text: String) throws(ValueProblem) -> Int {
        guard let seconds = DurationString.seconds(text) else { throw ValueProblem("'\(text)' is not a duration; write \(Self.durationForms)") }
        return seconds
    }

    /// A size in bytes: plain bytes or a number and a unit, `KiB`…`TiB` (powers of 1024) or `KB`…`TB`
    /// (powers of 1000) (``ByteSize``).
    public static func bytes(_ text: String) throws(ValueProblem) -> Int64 {
        guard let bytes = ByteSize.parse(text) else {
            throw ValueProblem("'\(text)' is not a size; write bytes or a number and a unit, e.g. 512MiB, 200GiB or 50MB (KiB…TiB are powers of 1024, KB…TB of 1000)")
        }
        return bytes
    }

    /// Why `text` is not a platform, `OS/ARCH[/VARIANT]` (e.g. `linux/arm64`, `linux/arm/v7`), or nil.
    /// A bare architecture gets a suggestion (`arm64` → `linux/arm64`).
    public static func platformProblem(_ text: String) -> String? {
        guard !Syntax.isPlatform(text) else { return nil }
        var message = "'\(text)' is not a platform; write OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64 or linux/arm/v7"
        if !text.isEmpty, !text.contains("/"), Syntax.isPlatform("linux/" + text.lowercased()) {
            message += "; did you mean 'linux/\(text.lowercased())'?"
        } else if text != text.lowercased(), Syntax.isPlatform(text.lowercased()) {
            message += "; did you mean '\(text.lowercased())'?"
        }
        return message
    }

    /// The base URL of a running Wharf, without trailing `/`. `HOST:PORT` (no scheme) means
    /// `http://HOST:PORT`. A path is kept (a Wharf reached through a path prefix, `/dockerhub`); user
    /// info, a query or a fragment are refused.
    public static func serverURL(_ text: String) throws(ValueProblem) -> String {
        let example = "expected http(s)://HOST:PORT or HOST:PORT, e.g. http://127.0.0.1:5000"
        var url = text.trimmingSpaces
        if !url.contains("://") {
            guard !url.isEmpty, !url.hasPrefix("/") else { throw ValueProblem("'\(text)' is not a URL; \(example)") }
            url = "http://" + url
        }
        guard let schemeEnd = url.firstRange(of: "://") else { throw ValueProblem("'\(text)' is not a URL; \(example)") }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { throw ValueProblem("scheme '\(scheme)' is not supported; \(example)") }
        var rest = String(url[schemeEnd.upperBound...])
        while rest.hasSuffix("/") { rest.removeLast() }
        if rest.contains("?") || rest.contains("#") { throw ValueProblem("'\(text)' must not have a query or fragment; \(example)") }
        let authority = rest.prefix { $0 != "/" }
        if authority.contains("@") { throw ValueProblem("'\(text)' must not contain user info (user@); use --credentials FILE") }
        if let problem = Syntax.httpURLProblem(scheme + "://" + authority, baseOnly: true) {
            throw ValueProblem(problem.replacingExample(with: example))
        }
        return scheme + "://" + rest
    }

    /// The candidate closest to `word` (Levenshtein distance at most 2), for "did you mean".
    public static func suggestion(for word: String, among candidates: [String]) -> String? {
        EditDistance.closest(to: word, among: candidates)
    }
}

/// What is wrong with a value typed on the command line (the text names no flag: the caller does).
public struct ValueProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension String {
    /// The message with the base-URL example of ``Syntax/httpURLProblem(_:baseOnly:)`` replaced.
    fileprivate func replacingExample(with example: String) -> String {
        var text = self
        if let range = text.firstRange(of: "expected http(s)://HOST[:PORT], e.g. https://cache.example.com") { text.replaceSubrange(range, with: example) }
        return text
    }
}
