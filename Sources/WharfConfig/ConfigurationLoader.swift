import Foundation
import Yams

/// Reads, checks and explains Wharf configuration files.
public enum ConfigurationLoader {
    /// Parses a YAML document. An empty document gives all defaults. Every mistake found is thrown
    /// at once, in file order, each with its line and column. Files named inside are not opened.
    public static func parse(yaml: String) throws(ConfigurationErrors) -> WharfConfiguration {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigurationErrors([YAMLErrorMapping.error(from: error, yaml: yaml)])
        }
        var decoder = ConfigurationDecoder()
        let config = decoder.decode(root)
        var errors = decoder.reader.errors
        let reported = decoder.reader.covered
        for error in self.validate(config) where !reported.contains(where: { Self.covers($0, error.keyPath) }) {
            errors.append(decoder.reader.locate(error))
        }
        guard errors.isEmpty else {
            throw ConfigurationErrors(errors.enumerated().sorted { a, b in
                let la = a.element.line ?? .max, lb = b.element.line ?? .max
                return (la, a.element.column ?? 0, a.offset) < (lb, b.element.column ?? 0, b.offset)
            }.map(\.element))
        }
        return config
    }

    /// Reads and parses a file. An unreadable file gives one error without a position.
    public static func load(path: String) throws(ConfigurationErrors) -> WharfConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            let reason = (error as NSError).localizedFailureReason ?? error.localizedDescription
            throw ConfigurationErrors([ConfigurationError(keyPath: "", message: "cannot read configuration file \(path): \(reason)")])
        }
        return try self.parse(yaml: text)
    }

    /// Cross-field checks (ranges, names, routing collisions, client-auth vs TLS, …) that hold however the
    /// configuration was assembled: run again after merging environment variables and flags.
    /// The errors carry key paths but no positions.
    public static func validate(_ config: WharfConfiguration) -> [ConfigurationError] {
        var validator = ConfigurationValidator(config)
        return validator.run()
    }

    /// Whether an error already reported at `reported` makes one at `path` redundant.
    private static func covers(_ reported: String, _ path: String) -> Bool {
        reported == path || path.hasPrefix(reported + ".") || path.hasPrefix(reported + "[")
    }
}

/// Turns Yams' syntax errors into positioned ``ConfigurationError``s.
enum YAMLErrorMapping {
    static func error(from error: any Error, yaml: String) -> ConfigurationError {
        guard let yamlError = error as? YamlError else {
            return ConfigurationError(keyPath: "", message: "YAML error: \(error)")
        }
        switch yamlError {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            var message = "YAML syntax error: \(problem)"
            if let context { message += " (\(context.text) at line \(context.mark.line), column \(context.mark.column))" }
            return ConfigurationError(line: mark.line, column: mark.column, keyPath: "", message: message)
        case .reader(let problem, let offset, _, _):
            let position = offset.map { Self.position(ofCharacter: $0, in: yaml) }
            return ConfigurationError(line: position?.line, column: position?.column, keyPath: "", message: "YAML cannot be read: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            let keys = duplicates.map { "'\($0)'" }.joined(separator: ", ")
            return ConfigurationError(line: context.mark.line, column: context.mark.column, keyPath: "",
                                      message: "duplicate key \(keys) in one mapping; each key may appear once")
        default:
            return ConfigurationError(keyPath: "", message: "YAML error: \(yamlError)")
        }
    }

    /// 1-based line and column of the character at `offset`.
    static func position(ofCharacter offset: Int, in text: String) -> (line: Int, column: Int) {
        var line = 1, column = 1
        for c in text.prefix(offset) {
            if c.isNewline { line += 1; column = 1 } else { column += 1 }
        }
        return (line, column)
    }
}
