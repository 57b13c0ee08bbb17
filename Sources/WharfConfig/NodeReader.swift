import Yams

/// The non-null values of one YAML mapping by key, and the key path of the mapping.
struct Fields {
    let path: String
    var values: [String: Node]
    /// Allowed keys that an unknown key was taken for a misspelling of (no "missing" error for those).
    var misspelled: Set<String> = []

    func path(_ key: String) -> String { self.path.isEmpty ? key : "\(self.path).\(key)" }
}

/// Reads Yams nodes into typed values. Collects every error with its position instead of stopping,
/// and remembers where each key path was written so later cross-field checks can point into the file.
struct NodeReader {
    private(set) var errors: [ConfigurationError] = []
    private(set) var marks: [String: Mark] = [:]
    /// Key paths already explained (errors, and keys taken for misspellings): later checks skip them.
    private(set) var covered: [String] = []

    mutating func fail(_ path: String, at mark: Mark?, _ message: String) {
        self.errors.append(ConfigurationError(line: mark?.line, column: mark?.column, keyPath: path, message: message))
        self.covered.append(path)
    }

    /// `~`, `null` or nothing at all.
    static func isNull(_ node: Node) -> Bool {
        guard case .scalar(let s) = node else { return false }
        return s.style == .plain && ["", "~", "null", "Null", "NULL"].contains(s.string)
    }

    /// What the node is, for error messages ("got a list").
    static func kind(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let s):
            guard s.style == .plain else { return "a string" }
            if node.int != nil || node.float != nil { return "a number" }
            return node.bool != nil ? "true/false" : "a string"
        }
    }

    /// The entries of a mapping. Keys not in `keys` are errors (with a suggestion); `special` gives
    /// a dedicated message for some keys that are not accepted. A null node reads as an empty mapping.
    mutating func fields(_ node: Node, at path: String, keys: [String], special: [String: String] = [:]) -> Fields? {
        if Self.isNull(node) { return Fields(path: path, values: [:]) }
        guard case .mapping(let mapping) = node else {
            let example = keys.prefix(2).map { "\($0): …" }.joined(separator: ", ")
            self.fail(path, at: node.mark, "expected a mapping (\(example)), got \(Self.kind(node))")
            return nil
        }
        var fields = Fields(path: path, values: [:])
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                self.fail(path, at: keyNode.mark, "keys must be plain names, got \(Self.kind(keyNode)) as a key")
                continue
            }
            let key = scalar.string
            let keyPath = fields.path(key)
            if let message = special[key] {
                self.fail(keyPath, at: keyNode.mark, message)
            } else if key == "<<" {
                self.fail(keyPath, at: keyNode.mark, "YAML merge keys ('<<') are not supported; write the keys out")
            } else if !keys.contains(key) {
                self.fail(keyPath, at: keyNode.mark, Self.unknownKeyMessage(key, allowed: keys))
                if let suggestion = EditDistance.closest(to: key, among: keys) {
                    fields.misspelled.insert(suggestion)
                    self.covered.append(fields.path(suggestion))
                }
            } else {
                self.marks[keyPath] = value.mark ?? keyNode.mark
                if !Self.isNull(value) { fields.values[key] = value }
            }
        }
        return fields
    }

    static func unknownKeyMessage(_ key: String, allowed: [String]) -> String {
        if let suggestion = EditDistance.closest(to: key, among: allowed) {
            return "unknown key '\(key)'; did you mean '\(suggestion)'?"
        }
        return "unknown key '\(key)'; allowed keys: \(allowed.joined(separator: ", "))"
    }

    /// An error for each of `keys` that is neither set nor misspelled, placed at `node` (the mapping).
    mutating func require(_ keys: [String], in f: Fields, at node: Node, _ message: (String) -> String) {
        for key in keys where f.values[key] == nil && !f.misspelled.contains(key) {
            self.fail(f.path(key), at: node.mark, message(key))
        }
    }

    /// The text of a scalar value, or an error naming `expected` when the value is a list or mapping.
    mutating func text(_ f: Fields, _ key: String, expected: String = "a string") -> String? {
        guard let node = f.values[key] else { return nil }
        guard case .scalar(let s) = node else {
            self.fail(f.path(key), at: node.mark, "expected \(expected), got \(Self.kind(node))")
            return nil
        }
        return s.string
    }

    /// A value that `parse` turns from text into `T`; otherwise an error saying what was expected.
    /// `echo: false` keeps the offending value out of the message.
    mutating func parsed<T>(_ f: Fields, _ key: String, expected: String, echo: Bool = true, _ parse: (String) -> T?) -> T? {
        guard let text = self.text(f, key, expected: expected) else { return nil }
        if let value = parse(text) { return value }
        let shown = echo ? "'\(text)'" : "this value"
        self.fail(f.path(key), at: f.values[key]?.mark, "expected \(expected), got \(shown)")
        return nil
    }

    mutating func int(_ f: Fields, _ key: String) -> Int? {
        self.parsed(f, key, expected: "a whole number") { Int($0) }
    }

    mutating func bool(_ f: Fields, _ key: String) -> Bool? {
        self.parsed(f, key, expected: "true or false") { text in
            switch text.lowercased() {
            case "true", "yes", "on": true
            case "false", "no", "off": false
            default: nil
            }
        }
    }

    /// The elements of a list value with their key paths (`key[0]`, `key[1]`, …).
    mutating func items(_ f: Fields, _ key: String) -> [(path: String, node: Node)]? {
        guard let node = f.values[key] else { return nil }
        guard case .sequence(let sequence) = node else {
            self.fail(f.path(key), at: node.mark, "expected a list, got \(Self.kind(node)); write [a, b] or one '- item' per line")
            return nil
        }
        return sequence.enumerated().map { index, element in
            let path = "\(f.path(key))[\(index)]"
            self.marks[path] = element.mark
            return (path, element)
        }
    }

    /// A list of strings; non-scalar or empty elements are errors and are left out.
    mutating func strings(_ f: Fields, _ key: String) -> [String]? {
        guard let items = self.items(f, key) else { return nil }
        var result: [String] = []
        for (path, node) in items {
            if case .scalar(let s) = node, !Self.isNull(node) {
                result.append(s.string)
            } else {
                let what = Self.isNull(node) ? "an empty item" : Self.kind(node)
                self.fail(path, at: node.mark, "expected a string, got \(what)")
            }
        }
        return result
    }

    /// `error` with the position of its key path, or of the nearest enclosing key path that was written.
    func locate(_ error: ConfigurationError) -> ConfigurationError {
        guard error.line == nil else { return error }
        var path = Substring(error.keyPath)
        while !path.isEmpty {
            if let mark = self.marks[String(path)] {
                var located = error
                located.line = mark.line
                located.column = mark.column
                return located
            }
            path = path[..<(path.lastIndex(where: { $0 == "." || $0 == "[" }) ?? path.startIndex)]
        }
        return error
    }
}
